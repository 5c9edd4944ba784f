"""Admin for the top layer: the customer memory page (every layer on one screen) and agent run traces."""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, IntegerField, Min, Model, OuterRef, Prefetch, QuerySet, Subquery
from django.db.models.functions import Coalesce, Length
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from memory.admin import (
    PassageTextForm,
    ScopedObjectAdmin,
    block_badges,
    block_last_change,
    change_author_html,
    customer_page_url,
    passage_badges,
    prompting_message_html,
    run_step_url,
)
from memory.models import ArchivalPassage, ChangeSource, MemoryBlock, PendingMemoryEdit
from memory.selectors import blocks_for_customer, passage_search, passages_for
from memory.services import MemoryEditError, Provenance, blocks_ensure, passage_insert
from support_agent.merge import MergeError, customer_merge, customer_merge_undo
from support_agent.models import AgentRun, AgentStep, CustomerMemory, CustomerMerge
from support_agent.tokens import count_message_tokens, count_tokens
from tickets.models import Customer, Ticket, TicketMessage
from tickets.selectors import ticket_list

RUN_STATUS_BADGE = {"completed": "ok", "failed": "over", "running": "pending", "queued": "system"}


def status_badge(run: AgentRun) -> SafeString:
    return format_html(
        '<span class="sm-badge sm-badge-{}">{}</span>', RUN_STATUS_BADGE.get(run.status, "system"), run.status
    )


# ---------------------------------------------------------------------------------------------------------------
# The customer page
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class BlockPanel:
    block: MemoryBlock
    badges: SafeString
    author: SafeString
    last_change: Any
    percent: int
    pending: int


def block_panel(block: MemoryBlock, pending: int) -> BlockPanel:
    last = block_last_change(block)
    return BlockPanel(
        block=block,
        badges=block_badges(block, pending=pending),
        author=change_author_html(last) if last else format_html("{}", ""),
        last_change=last,
        percent=min(100, round(100 * block.chars_current / block.char_limit)) if block.char_limit else 100,
        pending=pending,
    )


@dataclass
class PassageRow:
    passage: ArchivalPassage
    badges: SafeString
    author: SafeString


def _message_url(message: TicketMessage | None) -> str:
    """Where a message is read on its customer's page (tickets and conversations both carry the anchor)."""
    if message is None:
        return ""
    return f"{customer_page_url(message.customer_id)}#message-{message.pk}"


@dataclass
class Conversation:
    """Messages outside any ticket (widget chats, API turns, agent_chat) on one channel, close together in time."""

    channel: str
    channel_label: str
    messages: list[TicketMessage]

    @property
    def started_at(self) -> Any:
        return self.messages[0].created_at

    @property
    def ended_at(self) -> Any:
        return self.messages[-1].created_at


# A pause longer than this starts a new conversation on the same channel.
CONVERSATION_GAP = timedelta(hours=3)
CONVERSATION_MESSAGES_SHOWN = 400


def conversations_for(customer: Customer) -> list[Conversation]:
    """The customer's chats and API turns as conversations, newest first (the newest messages only)."""
    newest = list(
        TicketMessage.objects.filter(customer=customer, ticket__isnull=True).order_by("-created_at", "-id")[
            :CONVERSATION_MESSAGES_SHOWN
        ]
    )
    labels = dict(Ticket.Channel.choices)
    conversations: list[Conversation] = []
    open_by_channel: dict[str, Conversation] = {}
    for message in reversed(newest):
        channel = message.channel or Ticket.Channel.WIDGET
        current = open_by_channel.get(channel)
        if current is None or message.created_at - current.ended_at > CONVERSATION_GAP:
            current = Conversation(channel, labels.get(channel, channel), [])
            conversations.append(current)
            open_by_channel[channel] = current
        current.messages.append(message)
    return sorted(conversations, key=lambda c: c.ended_at, reverse=True)


def _link_runs(customer: Customer, messages: list[TicketMessage]) -> None:
    """Each agent message learns the run that wrote it, each customer message the run that answered it."""
    runs = AgentRun.objects.filter(customer=customer).values_list("pk", "reply_message_id", "trigger_message_id")
    wrote = {reply: pk for pk, reply, _ in runs if reply}
    answered = {trigger: pk for pk, _, trigger in runs if trigger}
    for message in messages:
        message.written_by_run = wrote.get(message.pk)  # type: ignore[attr-defined]
        message.answered_by_run = answered.get(message.pk)  # type: ignore[attr-defined]


def _first_seen(customer: Customer) -> Any:
    """When the customer first wrote: an imported history is older than the customer's row."""
    first_message = TicketMessage.objects.filter(customer=customer).aggregate(first=Min("created_at"))["first"]
    first_ticket = Ticket.objects.filter(customer=customer).aggregate(first=Min("created_at"))["first"]
    return min(moment for moment in (customer.created_at, first_message, first_ticket) if moment is not None)


def _count_of(rows: QuerySet[Any]) -> Coalesce:
    """COUNT(*) of a customer-correlated queryset, as an annotation."""
    counted = rows.order_by().values("customer_id").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted[:1], output_field=IntegerField()), 0)


class MergeForm(forms.Form):
    into = forms.IntegerField(
        min_value=1,
        max_value=2**63 - 1,
        label="Merge into customer #",
        help_text="The id of the customer that remains (find it with the customer search).",
    )


@admin.register(CustomerMemory)
class CustomerMemoryAdmin(ScopedObjectAdmin):
    """Find a customer by name, email or any external id; open everything the agent knows about them."""

    list_display = ["name_link", "email", "identity_badges", "memory_badges", "ticket_count", "last_run"]
    search_fields = ["name", "email", "identities__external_id"]
    search_help_text = "Search by name, email or any external id (helpdesk, widget, API)."
    list_per_page = 50

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # customers arrive through helpdesks, the widget and the API (tickets admin for by hand)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # Correlated subqueries, not joins: joining tickets, blocks, edits and runs at once multiplies rows.
        over_limit = MemoryBlock.objects.filter(customer=OuterRef("pk"), char_limit__lt=Length("value"))
        pending = PendingMemoryEdit.objects.filter(customer=OuterRef("pk"), status=PendingMemoryEdit.Status.PENDING)
        last_run = AgentRun.objects.filter(customer=OuterRef("pk")).order_by("-created_at").values("created_at")
        return (
            super()
            .get_queryset(request)
            .prefetch_related("identities")
            .annotate(
                n_tickets=_count_of(Ticket.objects.filter(customer=OuterRef("pk"))),
                n_over=_count_of(over_limit),
                n_pending=_count_of(pending),
                last_run_at=Subquery(last_run[:1]),
            )
        )

    @admin.display(description="customer", ordering="name")
    def name_link(self, customer: CustomerMemory) -> SafeString:
        return format_html('<a href="{}"><strong>{}</strong></a>', customer_page_url(customer.pk), customer)

    @admin.display(description="identities")
    def identity_badges(self, customer: CustomerMemory) -> SafeString:
        return format_html_join(
            " ",
            '<span class="sm-badge sm-badge-id">{}:{}</span>',
            ((i.source, i.external_id) for i in customer.identities.all()),
        )

    @admin.display(description="memory")
    def memory_badges(self, customer: Any) -> SafeString:
        badges = []
        if customer.n_pending:
            badges.append(("pending", f"{customer.n_pending} pending"))
        if customer.n_over:
            badges.append(("over", f"{customer.n_over} over limit"))
        return format_html_join(" ", '<span class="sm-badge sm-badge-{}">{}</span>', badges)

    @admin.display(description="tickets", ordering="n_tickets")
    def ticket_count(self, customer: Any) -> int:
        return int(customer.n_tickets)

    @admin.display(description="last agent run", ordering="last_run_at")
    def last_run(self, customer: Any) -> Any:
        return customer.last_run_at or "—"

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/passages/add/",
                wrap(self.add_passage_view),
                name="support_agent_customermemory_add_passage",
            ),
            path(
                "<path:object_id>/blocks/ensure/",
                wrap(self.ensure_blocks_view),
                name="support_agent_customermemory_ensure_blocks",
            ),
            path("<path:object_id>/merge/", wrap(self.merge_view), name="support_agent_customermemory_merge"),
            path(
                "merges/<int:merge_id>/undo/",
                wrap(self.merge_undo_view),
                name="support_agent_customermemory_merge_undo",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        customer = self.scoped_object(request, object_id)
        tickets = list(
            ticket_list(customer=customer).prefetch_related(
                Prefetch("messages", queryset=TicketMessage.objects.order_by("created_at", "id"))
            )
        )
        conversations = conversations_for(customer)
        _link_runs(
            customer, [m for t in tickets for m in t.messages.all()] + [m for c in conversations for m in c.messages]
        )
        context = self.page_context(
            request,
            str(customer),
            customer=customer,
            **self._memory_context(customer),
            **self._passage_context(request, customer),
            tickets=tickets,
            conversations=conversations,
            first_seen=_first_seen(customer),
            runs=self._runs(customer),
            can_edit_memory=request.user.has_perm("memory.change_memoryblock"),
            can_add_memory=request.user.has_perm("memory.add_memoryblock"),
            can_delete_memory=request.user.has_perm("memory.delete_memoryblock"),
            can_add_passage=request.user.has_perm("memory.add_archivalpassage"),
            can_merge=request.user.has_perm("tickets.change_customer"),
            passage_form=PassageTextForm(),
        )
        return TemplateResponse(request, "admin/support_agent/customermemory/customer.html", context)

    def _memory_context(self, customer: Any) -> dict[str, Any]:
        blocks = blocks_for_customer(customer=customer)
        pending = PendingMemoryEdit.objects.filter(
            block__in=blocks, status=PendingMemoryEdit.Status.PENDING
        ).select_related("block")
        counts: dict[int, int] = {}
        for edit in pending:
            counts[edit.block_id] = counts.get(edit.block_id, 0) + 1
        panels = [block_panel(block, counts.get(block.pk, 0)) for block in blocks]
        return {
            "customer_blocks": [p for p in panels if p.block.customer_id is not None],
            "org_blocks": [p for p in panels if p.block.customer_id is None],
            "pending_count": len([e for e in pending if e.customer_id == customer.pk]),
        }

    def _passage_context(self, request: HttpRequest, customer: Any) -> dict[str, Any]:
        query = request.GET.get("q", "").strip()[:500]
        if query:
            found = passage_search(
                organization=customer.organization,
                customer=customer,
                query=query,
                page_size=25,
                include_invalidated=request.GET.get("superseded") == "1",
            )
            passages = found.results
        else:
            passages = list(
                passages_for(organization=customer.organization, customer=customer, include_invalidated=True)
                .select_related("superseded_by")
                .order_by("invalidated_at", "-created_at")[:100]
            )
        rows = [PassageRow(p, passage_badges(p), change_author_html(p)) for p in passages]
        return {"passage_query": query, "passages": rows}

    def _runs(self, customer: Any) -> list[AgentRun]:
        return list(AgentRun.objects.filter(customer=customer).select_related("ticket").order_by("-created_at")[:25])

    def add_passage_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Staff add a fact to the customer's archival memory through passage_insert."""
        customer = self.scoped_object(request, object_id)
        page = customer_page_url(customer.pk) + "#passages"
        if request.method != "POST":
            return HttpResponseRedirect(page)
        if not request.user.has_perm("memory.add_archivalpassage"):
            raise PermissionDenied
        form = PassageTextForm(request.POST)
        if not form.is_valid():
            messages.error(request, "; ".join(str(e) for errors in form.errors.values() for e in errors))
            return HttpResponseRedirect(page)
        try:
            _, created = passage_insert(
                organization=customer.organization,
                customer=customer,
                text=form.cleaned_data["text"],
                tags=form.tag_list(),
                provenance=Provenance(source=ChangeSource.STAFF, user=request.user),  # type: ignore[arg-type]
            )
        except MemoryEditError as exc:
            messages.error(request, str(exc))
            return HttpResponseRedirect(page)
        messages.success(request, "Added to archival memory." if created else "That passage was already stored.")
        return HttpResponseRedirect(page)

    def merge_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Merge this customer into another of the same organisation (``customer_merge``), and list the merges
        into this customer with their undo buttons."""
        customer = self.scoped_object(request, object_id)
        if not request.user.has_perm("tickets.change_customer"):
            raise PermissionDenied
        form = MergeForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            into = self.get_queryset(request).filter(pk=form.cleaned_data["into"]).first()
            if into is None:
                form.add_error("into", "No customer with that id in your organisation.")
            else:
                try:
                    customer_merge(source=customer, into=into, user=request.user)  # type: ignore[arg-type]
                except MergeError as exc:
                    form.add_error("into", str(exc))
                else:
                    messages.success(request, f"Merged {customer} into {into}. The merge can be undone below.")
                    return HttpResponseRedirect(reverse("admin:support_agent_customermemory_merge", args=[into.pk]))
        merges = CustomerMerge.objects.filter(into=customer).select_related("merged_by")
        context = self.page_context(request, f"Merge {customer}", customer=customer, form=form, merges=merges)
        return TemplateResponse(request, "admin/support_agent/customermemory/merge.html", context)

    def merge_undo_view(self, request: HttpRequest, merge_id: int) -> HttpResponse:
        merge = CustomerMerge.objects.filter(pk=merge_id).first()
        if merge is None:
            raise Http404("No such merge")
        into = self.scoped_object(request, str(merge.into_id))  # 404 for another organisation's merge
        if request.method != "POST" or not request.user.has_perm("tickets.change_customer"):
            raise PermissionDenied
        try:
            customer_merge_undo(merge=merge, user=request.user)  # type: ignore[arg-type]
        except MergeError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Merge undone: customer #{merge.source_customer_id} is back.")
        return HttpResponseRedirect(reverse("admin:support_agent_customermemory_merge", args=[into.pk]))

    def ensure_blocks_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        customer = self.scoped_object(request, object_id)
        if request.method == "POST":
            if not request.user.has_perm("memory.change_memoryblock"):
                raise PermissionDenied
            blocks_ensure(customer=customer)
            messages.success(request, "Created the default memory blocks.")
        return HttpResponseRedirect(customer_page_url(customer.pk))


# ---------------------------------------------------------------------------------------------------------------
# Agent runs: the trace
# ---------------------------------------------------------------------------------------------------------------


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def _call_parts(call: Any) -> tuple[str, Any]:
    """A tool call's name and arguments, whether stored OpenAI-style (function.name/arguments) or flat."""
    if not isinstance(call, dict):
        return "?", call
    nested = call.get("function")
    function: dict[str, Any] = nested if isinstance(nested, dict) else call
    name = str(function.get("name", "?"))
    arguments = function.get("arguments", function.get("args", {}))
    if isinstance(arguments, str):
        # Malformed arguments are shown as the model sent them.
        with contextlib.suppress(ValueError):
            arguments = json.loads(arguments)
    return name, arguments


def _response_text(response: Any) -> str:
    """The assistant's text from a stored response (a chat message, a full completion, or plain text)."""
    if isinstance(response, str):
        return response
    if not isinstance(response, dict):
        return ""
    if response.get("choices"):
        response = response["choices"][0].get("message", {})
    content = response.get("content")
    return content if isinstance(content, str) else ""


@dataclass
class ResultView:
    name: str
    ok: bool | None
    text: str


def _result_view(result: Any) -> ResultView:
    """A stored tool result: the loop's record (name, ok, content) or anything else, pretty-printed."""
    if isinstance(result, dict) and "content" in result:
        content = result["content"]
        text = content if isinstance(content, str) else pretty_json(content)
        return ResultView(str(result.get("name", "")), result.get("ok"), text)
    return ResultView("", None, result if isinstance(result, str) else pretty_json(result))


@dataclass
class PromptPart:
    title: str
    role: str
    tokens: int
    text: str


_SECTION_HEADING = re.compile(r"\n\n(?=### )")


def _content_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    text = content if isinstance(content, str) else (pretty_json(content) if content else "")
    calls = message.get("tool_calls") or []
    if calls:
        text += "".join(f"\n→ {name}({pretty_json(args)})" for name, args in map(_call_parts, calls))
    return text.strip()


def prompt_parts(request_messages: list[dict[str, Any]]) -> list[PromptPart]:
    """The prompt as staff read it: the system message cut at its sections, then every message, each counted.

    The system message is compiled as instructions then "### ..." sections (core memory, statistics, summary,
    pressure); cutting at those headings is for display only, the model saw one message.
    """
    parts: list[PromptPart] = []
    for message in request_messages:
        role = str(message.get("role", ""))
        text = _content_text(message)
        if role == "system" and not parts:
            for piece in _SECTION_HEADING.split(text):
                title, _, _ = piece.partition("\n")
                title = title[4:] if title.startswith("### ") else "Instructions"
                parts.append(PromptPart(title, role, count_tokens(piece), piece))
            continue
        title = {"user": "Customer / event", "assistant": "Assistant", "tool": "Tool result"}.get(role, role.title())
        parts.append(PromptPart(title, role, count_message_tokens(message), text))
    return parts


@dataclass
class StepView:
    step: AgentStep
    number: int
    text: str
    calls: list[tuple[str, str]]
    results: list[ResultView]
    prompt: list[PromptPart]
    request_json: str
    response_json: str
    is_last: bool

    @property
    def prompt_total(self) -> int:
        return sum(part.tokens for part in self.prompt)


def step_view(step: AgentStep, *, is_last: bool) -> StepView:
    calls = [(name, pretty_json(args)) for name, args in map(_call_parts, step.tool_calls or [])]
    results = [_result_view(result) for result in (step.tool_results or [])]
    return StepView(
        step=step,
        number=step.index + 1,
        text=_response_text(step.response),
        calls=calls,
        results=results,
        prompt=prompt_parts(step.request_messages or []),
        request_json=pretty_json(step.request_messages),
        response_json=pretty_json(step.response),
        is_last=is_last,
    )


def _memory_changes(run: AgentRun) -> list[dict[str, Any]]:
    """Every memory change this run made or proposed, each linked to its step."""
    changes: list[dict[str, Any]] = []
    history = MemoryBlock.history.filter(agent_run_id=run.pk).order_by("history_id")  # type: ignore[attr-defined]
    for row in history:
        changes.append(
            {
                "kind": "block",
                "label": row.label,
                "url": reverse("admin:memory_memoryblock_history", args=[row.id]),
                "step_url": run_step_url(run.pk, row.agent_step_id),
                "what": f"version {row.version}: {row.history_change_reason or 'edited'}",
            }
        )
    for edit in PendingMemoryEdit.objects.filter(agent_run_id=run.pk).select_related("block"):
        changes.append(
            {
                "kind": "pending",
                "label": edit.block.label,
                "url": reverse("admin:memory_pendingmemoryedit_change", args=[edit.pk]),
                "step_url": run_step_url(run.pk, edit.agent_step_id),
                "what": f"{edit.operation} proposed, {edit.get_status_display().lower()}",
            }
        )
    for passage in ArchivalPassage.objects.filter(agent_run_id=run.pk):
        changes.append(
            {
                "kind": "passage",
                "label": "archival",
                "url": reverse("admin:memory_archivalpassage_change", args=[passage.pk]),
                "step_url": run_step_url(run.pk, passage.agent_step_id),
                "what": str(passage),
            }
        )
    return changes


@admin.register(AgentRun)
class AgentRunAdmin(ScopedObjectAdmin):
    list_display = ["__str__", "customer_link", "trigger", "status_badge", "stop_reason", "step_count", "created_at"]
    list_filter = ["status", "trigger", "stop_reason"]
    list_select_related = ["customer"]
    search_fields = ["customer__name", "customer__email", "reply"]
    date_hierarchy = "created_at"

    # Runs are records of what happened: nobody edits them by hand.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    @admin.display(description="customer")
    def customer_link(self, run: AgentRun) -> SafeString:
        return format_html('<a href="{}">{}</a>', customer_page_url(run.customer_id), run.customer)

    @admin.display(description="status")
    def status_badge(self, run: AgentRun) -> SafeString:
        return status_badge(run)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        run = self.scoped_object(request, object_id)
        steps = list(run.steps.order_by("index"))
        duration = (run.finished_at - run.started_at).total_seconds() if run.finished_at and run.started_at else None
        context = self.page_context(
            request,
            f"Agent run #{run.pk}",
            run=run,
            status=status_badge(run),
            offline=run.model_name.startswith("offline"),
            reply_url=_message_url(run.reply_message),
            steps=[step_view(step, is_last=i == len(steps) - 1) for i, step in enumerate(steps)],
            duration=duration,
            trigger_message=prompting_message_html(run.trigger_message_id),
            changes=_memory_changes(run),
            customer_url=customer_page_url(run.customer_id),
        )
        return TemplateResponse(request, "admin/support_agent/agentrun/trace.html", context)


@admin.register(AgentStep)
class AgentStepAdmin(ScopedObjectAdmin):
    """Steps are read inside their run's trace; a step's own page sends you there, at the step."""

    org_field = "run__organization"
    list_display = ["__str__", "latency_ms", "context_tokens", "prompt_tokens", "completion_tokens", "created_at"]
    list_select_related = ["run"]

    def has_module_permission(self, request: HttpRequest) -> bool:
        return False  # reached from runs, not listed on its own

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        step = self.scoped_object(request, object_id)
        if not self.has_view_permission(request, step):
            raise Http404("Not found")
        return HttpResponseRedirect(run_step_url(step.run_id, step.pk))
