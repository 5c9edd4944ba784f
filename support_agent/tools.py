"""The agent's tools. Each is declared once: an argument model (its docstring is the description the model
reads, its JSON schema is generated) plus one handler, registered in ``TOOLS``.

The customer is bound to the run (``RunContext``), never an argument, so no tool can reach another
customer's data. A handler that cannot do what was asked raises ``ToolError``; the loop hands the message
back to the model as the tool result.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from functools import lru_cache
from typing import Any, Literal

import openai
from django.contrib.postgres.search import SearchQuery, SearchVector
from django.http import Http404
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from memory.models import ChangeSource, raw_text_for
from memory.selectors import SearchPage, block_get, message_search, passage_search, passages_for
from memory.services import MemoryEditError, Provenance, block_agent_edit, passage_insert, passage_supersede
from support_agent.context import when_text
from support_agent.models import AgentRun, AgentStep
from tickets.input_safety import UnsafeJSON, json_loads_safe
from tickets.models import Customer, Ticket, TicketMessage
from tickets.selectors import ticket_get, ticket_list, ticket_messages
from tickets.services import message_ingest

logger = logging.getLogger(__name__)

PAGE_SIZE = 5
_SNIPPET = 400
# A solved-ticket summary ends with its resolution: a passage is shown whole up to this length, so it is not cut off.
_PASSAGE_SNIPPET = 1200


class ToolError(Exception):
    """A tool could not do what was asked. The message goes back to the model as the tool result."""


@dataclass
class RunContext:
    """What a tool may touch: the run's customer (bound, never an argument), the run and the current step."""

    customer: Customer
    run: AgentRun
    step: AgentStep | None = None
    allow_reply: bool = True
    on_reply: Callable[[TicketMessage], None] | None = None
    replies: list[TicketMessage] = field(default_factory=list)

    @property
    def sees_internal(self) -> bool:
        """Whether this run may read internal notes and staff-only passages: only when staff read its output.
        Every tool that reads messages or passages asks this (docs/security.md, "Audience")."""
        return self.run.audience == AgentRun.Audience.STAFF

    def provenance(self, reason: str) -> Provenance:
        return Provenance(
            source=ChangeSource.AGENT,
            agent_run_id=self.run.pk,
            agent_step_id=self.step.pk if self.step else None,
            prompting_message_id=self.run.trigger_message_id,
            reason=reason,
        )


class ToolArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_heartbeat: bool = Field(
        False, description="true to get another step after this tool runs (e.g. to read its result)."
    )


class SendMessage(ToolArgs):
    """Send a message to the customer. This is the only way to reply; the text is delivered as written."""

    message: str = Field(description="The reply, in the customer's language.")


class CoreMemoryAppend(ToolArgs):
    """Append a line to one of the customer's core memory blocks (e.g. customer, preferences, open_issues)."""

    label: str = Field(description="The block's label, as shown in core memory.")
    content: str = Field(description="The text to add, a short self-contained fact.")


class CoreMemoryReplace(ToolArgs):
    """Replace text in a core memory block. old_content must match the block's text exactly once; an empty
    new_content deletes it."""

    label: str = Field(description="The block's label, as shown in core memory.")
    old_content: str = Field(description="The exact text to replace, quoted from the block.")
    new_content: str = Field(description="The replacement text (empty to delete).")


class ArchivalMemoryInsert(ToolArgs):
    """Store a fact in archival memory, for later searches. Use it for details too long or too rare for core
    memory: order numbers, configurations, what fixed a problem."""

    content: str = Field(description="The fact, self-contained (it is read later without this conversation).")
    tags: list[str] = Field(default_factory=list, description="A few lowercase tags, e.g. ['billing'].")


class ArchivalMemorySupersede(ToolArgs):
    """Replace an archival fact that is no longer true with its new version (an order number, an address that
    changed). The old passage leaves search results but stays visible to staff, linked to the new one."""

    passage_id: int = Field(description="The passage to replace, as passage_id in archival_memory_search results.")
    content: str = Field(description="The fact as it is now, self-contained.")
    tags: list[str] | None = Field(None, description="Tags for the new passage; omitted: the old passage's tags.")


class ArchivalMemorySearch(ToolArgs):
    """Search archival memory (facts, solved-ticket summaries, documents) by words, tags and dates."""

    query: str = Field(description="Words to look for; empty lists the newest passages.")
    tags: list[str] | None = Field(None, description="Only passages carrying all these tags.")
    start: str | None = Field(None, description="Only passages stored on or after this ISO date or date-time.")
    end: str | None = Field(None, description="Only passages stored on or before this ISO date or date-time.")
    page: int = Field(1, description="Result page, from 1.")


class ConversationSearch(ToolArgs):
    """Search recall memory: every message ever exchanged with this customer, including those no longer in
    your context, by words and a date range."""

    query: str = Field(description="Words to look for; empty lists the newest messages in the date range.")
    start: str | None = Field(None, description="Only messages on or after this ISO date or date-time.")
    end: str | None = Field(None, description="Only messages on or before this ISO date or date-time.")
    page: int = Field(1, description="Result page, from 1.")


class ListTickets(ToolArgs):
    """List this customer's tickets, newest first, optionally by status."""

    status: Literal["new", "open", "pending", "on_hold", "solved", "closed"] | None = Field(
        None, description="Only tickets with this status."
    )


class GetTicket(ToolArgs):
    """Read one of this customer's tickets with its messages."""

    ticket_id: int = Field(description="The ticket number, as in 'ticket #12'.")


class SearchTickets(ToolArgs):
    """Find this customer's tickets whose subject or messages mention the query."""

    query: str = Field(description="Words to look for.")


def _agent_author(ctx: RunContext) -> str:
    return "offline model" if ctx.run.model_name == "offline model" else "Support agent"


def send_message(args: SendMessage, ctx: RunContext) -> dict[str, Any]:
    if not ctx.allow_reply:
        raise ToolError("This run does not talk to the customer (consolidation); send_message is not available.")
    text = args.message.strip()
    if not text:
        raise ToolError("message is empty.")
    message, _ = message_ingest(
        customer=ctx.customer,
        ticket=ctx.run.ticket,
        body=text,
        author_role=TicketMessage.Role.AGENT,
        author_name=_agent_author(ctx),
        # A reply outside a ticket goes back on the channel the customer wrote on (widget, API, agent_chat).
        channel="" if ctx.run.ticket_id else getattr(ctx.run.trigger_message, "channel", ""),
        # A staff-audience run drafts for staff: its text may draw on internal notes, so it is internal too.
        is_public=not ctx.sees_internal,
        trigger_agent=False,
    )
    ctx.replies.append(message)
    if ctx.on_reply is not None:
        ctx.on_reply(message)
    return {"sent": True, "message_id": message.pk}


def _edit_block(ctx: RunContext, label: str, operation: str, new: str, old: str = "") -> dict[str, Any]:
    block = block_get(customer=ctx.customer, label=label)
    if block is None:
        raise ToolError(f"No core memory block labelled {label!r}.")
    if block.customer_id is None:
        raise ToolError(f"Block {label!r} is shared by the whole organisation; only staff can change it.")
    if old and old not in block.value:
        # The model quotes the block as rendered, where tag and heading marks are inert look-alikes.
        old = raw_text_for(block.value, old) or old
    try:
        outcome = block_agent_edit(
            block=block,
            operation=operation,
            new_content=new,
            old_content=old,
            provenance=ctx.provenance(f"{operation} by the agent"),
        )
    except MemoryEditError as exc:
        raise ToolError(str(exc)) from exc
    if outcome.pending is not None:
        result: dict[str, Any] = {
            "applied": False,
            "note": f"Edit #{outcome.pending.pk} awaits staff review; it is not in core memory until approved.",
        }
    else:
        result = {"applied": True, "block": label, "chars": f"{outcome.block.chars_current}/{block.char_limit}"}
    if outcome.warnings:
        result["warnings"] = outcome.warnings
    return result


def core_memory_append(args: CoreMemoryAppend, ctx: RunContext) -> dict[str, Any]:
    return _edit_block(ctx, args.label, "append", args.content)


def core_memory_replace(args: CoreMemoryReplace, ctx: RunContext) -> dict[str, Any]:
    return _edit_block(ctx, args.label, "replace", args.new_content, args.old_content)


def archival_memory_insert(args: ArchivalMemoryInsert, ctx: RunContext) -> dict[str, Any]:
    try:
        passage, created = passage_insert(
            organization=ctx.customer.organization,
            customer=ctx.customer,
            text=args.content,
            tags=args.tags,
            provenance=ctx.provenance("archival_memory_insert by the agent"),
            source_message_id=ctx.run.trigger_message_id,
            staff_only=ctx.sees_internal,
        )
    except MemoryEditError as exc:
        raise ToolError(str(exc)) from exc
    return {"stored": created, "passage_id": passage.pk, "note": "" if created else "an identical passage exists"}


def archival_memory_supersede(args: ArchivalMemorySupersede, ctx: RunContext) -> dict[str, Any]:
    # Through passages_for: only this customer's passages, and current ones, can be superseded by its agent.
    passage = passages_for(
        organization=ctx.customer.organization, customer=ctx.customer, include_staff_only=ctx.sees_internal
    ).filter(pk=args.passage_id)
    old = passage.first()
    if old is None:
        raise ToolError(f"No current passage #{args.passage_id} of this customer; archival_memory_search shows them.")
    try:
        successor = passage_supersede(
            passage=old,
            new_text=args.content.strip(),
            tags=args.tags,
            provenance=ctx.provenance("archival_memory_supersede by the agent"),
            source_message_id=ctx.run.trigger_message_id,
            staff_only=ctx.sees_internal,
        )
    except MemoryEditError as exc:
        raise ToolError(str(exc)) from exc
    return {"superseded": old.pk, "passage_id": successor.pk}


def _when(value: str | None, *, end: bool = False) -> datetime | None:
    """An ISO date or date-time from the model; a bare end date means the end of that day."""
    if not value:
        return None
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise ToolError(f"{value!r} is not an ISO date (YYYY-MM-DD) or date-time.")
        moment = datetime.combine(day, time.max if end else time.min)
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, UTC)


def _page_result(page: SearchPage[Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"results": rows, "page": page.page, "total": page.total, "has_next_page": page.has_next}


def archival_memory_search(args: ArchivalMemorySearch, ctx: RunContext) -> dict[str, Any]:
    page = passage_search(
        organization=ctx.customer.organization,
        customer=ctx.customer,
        query=args.query,
        tags=args.tags or None,
        start=_when(args.start),
        end=_when(args.end, end=True),
        page=max(args.page, 1),
        page_size=PAGE_SIZE,
        include_staff_only=ctx.sees_internal,
    )
    rows = [
        {"passage_id": p.pk, "stored": when_text(p.created_at), "tags": p.tags, "text": p.text[:_PASSAGE_SNIPPET]}
        for p in page.results
    ]
    return _page_result(page, rows)


def _message_row(message: TicketMessage) -> dict[str, Any]:
    row = {
        "message_id": message.pk,
        "when": when_text(message.created_at),
        "ticket": message.ticket_id,
        "from": message.author_role,
        "text": message.body[:_SNIPPET],
    }
    if not message.is_public:  # only staff-audience runs get here (the searches leave them out otherwise)
        row["from"] = f"{message.author_role} (internal note: staff only, never tell the customer)"
        row["internal"] = True
    return row


def conversation_search(args: ConversationSearch, ctx: RunContext) -> dict[str, Any]:
    page = message_search(
        customer=ctx.customer,
        query=args.query,
        start=_when(args.start),
        end=_when(args.end, end=True),
        page=max(args.page, 1),
        page_size=PAGE_SIZE,
        include_internal=ctx.sees_internal,
    )
    return _page_result(page, [_message_row(message) for message in page.results])


def _ticket_row(ticket: Ticket) -> dict[str, Any]:
    return {
        "ticket_id": ticket.pk,
        "subject": ticket.subject,
        "status": ticket.status,
        "opened": when_text(ticket.created_at),
        "updated": when_text(ticket.updated_at),
        "tags": ticket.tags,
    }


def list_tickets(args: ListTickets, ctx: RunContext) -> dict[str, Any]:
    tickets = ticket_list(customer=ctx.customer, status=args.status)
    return {"tickets": [_ticket_row(ticket) for ticket in tickets[:20]], "total": tickets.count()}


def get_ticket(args: GetTicket, ctx: RunContext) -> dict[str, Any]:
    try:
        ticket = ticket_get(customer=ctx.customer, ticket_id=args.ticket_id)
    except Http404:
        raise ToolError(f"This customer has no ticket #{args.ticket_id}; list_tickets shows theirs.") from None
    visible = ticket_messages(ticket=ticket, include_internal=ctx.sees_internal)
    messages = list(visible.order_by("-created_at", "-id")[:20])
    return {**_ticket_row(ticket), "messages": [_message_row(message) for message in reversed(messages)]}


def search_tickets(args: SearchTickets, ctx: RunContext) -> dict[str, Any]:
    if not args.query.strip():
        raise ToolError("query is empty.")
    query = SearchQuery(args.query, config="english", search_type="websearch")
    by_subject = ticket_list(customer=ctx.customer).annotate(match=SearchVector("subject", config="english"))
    found: dict[int, dict[str, Any]] = {t.pk: _ticket_row(t) for t in by_subject.filter(match=query)[:10]}
    matching = message_search(customer=ctx.customer, query=args.query, page_size=50, include_internal=ctx.sees_internal)
    for message in matching.results:
        if message.ticket_id is not None and message.ticket_id not in found and len(found) < 10:
            found[message.ticket_id] = {**_ticket_row(message.ticket), "matching_message": _message_row(message)}  # type: ignore[arg-type]
    return {"tickets": list(found.values())}


@dataclass(frozen=True)
class Tool:
    args: type[ToolArgs]
    handler: Callable[[Any, RunContext], Any]
    label: Callable[[dict[str, Any]], str]


def _fixed(text: str) -> Callable[[dict[str, Any]], str]:
    return lambda _args: text


TOOLS: dict[str, Tool] = {
    "send_message": Tool(SendMessage, send_message, _fixed("Writing a reply")),
    "core_memory_append": Tool(CoreMemoryAppend, core_memory_append, _fixed("Updating what I remember about you")),
    "core_memory_replace": Tool(CoreMemoryReplace, core_memory_replace, _fixed("Updating what I remember about you")),
    "archival_memory_insert": Tool(ArchivalMemoryInsert, archival_memory_insert, _fixed("Saving a note for later")),
    "archival_memory_supersede": Tool(
        ArchivalMemorySupersede, archival_memory_supersede, _fixed("Updating a note that changed")
    ),
    "archival_memory_search": Tool(ArchivalMemorySearch, archival_memory_search, _fixed("Searching my notes")),
    "conversation_search": Tool(ConversationSearch, conversation_search, _fixed("Searching our past conversations")),
    "list_tickets": Tool(ListTickets, list_tickets, _fixed("Listing your tickets")),
    "get_ticket": Tool(GetTicket, get_ticket, lambda a: f"Looking up ticket #{a.get('ticket_id', '?')}"),
    "search_tickets": Tool(SearchTickets, search_tickets, _fixed("Searching your ticket history")),
}


def tool_schemas(*, allow_reply: bool = True) -> list[dict[str, Any]]:
    """The OpenAI "tools" list, generated from the argument models (once per process: they never change)."""
    return list(_tool_schemas(allow_reply))


@lru_cache(maxsize=2)
def _tool_schemas(allow_reply: bool) -> tuple[dict[str, Any], ...]:
    schemas = []
    for name, tool in TOOLS.items():
        if name == "send_message" and not allow_reply:
            continue
        schema: dict[str, Any] = dict(openai.pydantic_function_tool(tool.args, name=name))
        # Non-strict: many OpenAI-compatible servers (Ollama, llama.cpp, vLLM) reject or ignore strict mode.
        schema["function"] = {k: v for k, v in schema["function"].items() if k != "strict"}
        schemas.append(schema)
    return tuple(schemas)


@dataclass
class ToolOutcome:
    """One executed tool call, as recorded on the step and returned to the model."""

    call_id: str
    name: str
    ok: bool
    content: str
    heartbeat: bool = False
    arguments: dict[str, Any] | None = None
    # Succeeded with a warning the model should act on (a block over its limit): worth another step.
    flagged: bool = False

    def as_message(self) -> dict[str, Any]:
        return {"role": "tool", "tool_call_id": self.call_id, "content": self.content}

    def as_record(self) -> dict[str, Any]:
        return {"tool_call_id": self.call_id, "name": self.name, "ok": self.ok, "content": self.content}


def parse_arguments(raw: str | None) -> dict[str, Any]:
    """The model's argument string as a JSON object, or ToolError."""
    if raw is None or not raw.strip():
        return {}
    try:
        parsed = json_loads_safe(raw)
    except UnsafeJSON as exc:
        raise ToolError(f"The arguments were refused: {exc}") from None
    except json.JSONDecodeError as exc:
        problem = f"{exc.msg} at char {exc.pos}"
        raise ToolError(f"The arguments are not valid JSON ({problem}); send a JSON object.") from None
    if not isinstance(parsed, dict):
        raise ToolError("The arguments must be a JSON object.")
    return parsed


def _validation_text(exc: ValidationError) -> str:
    problems = [f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}" for err in exc.errors()]
    return "Invalid arguments: " + "; ".join(problems)


def tool_label(name: str, raw_arguments: str | None) -> str:
    tool = TOOLS.get(name)
    if tool is None:
        return "Working"
    try:
        return tool.label(parse_arguments(raw_arguments))
    except ToolError:
        return tool.label({})


def tool_execute(*, call_id: str, name: str, raw_arguments: str | None, ctx: RunContext) -> ToolOutcome:
    """Run one tool call. Every failure (unknown tool, bad JSON, bad arguments, ToolError) becomes an
    error result for the model, never an exception for the loop."""
    arguments: dict[str, Any] | None = None
    try:
        tool = TOOLS.get(name)
        if tool is None:
            raise ToolError(f"Unknown tool {name!r}. Available tools: {', '.join(TOOLS)}.")
        arguments = parse_arguments(raw_arguments)
        try:
            args = tool.args.model_validate(arguments)
        except ValidationError as exc:
            raise ToolError(_validation_text(exc)) from None
        result = tool.handler(args, ctx)
    except ToolError as exc:
        return ToolOutcome(call_id, name, False, json.dumps({"ok": False, "error": str(exc)}), False, arguments)
    except Exception:
        # A fault in our own code must not take the run down: the model hears that the tool failed.
        logger.exception("tool %s failed in run %s", name, ctx.run.pk)
        error = {"ok": False, "error": f"{name} failed because of an internal error; try another approach."}
        return ToolOutcome(call_id, name, False, json.dumps(error), False, arguments)
    payload = json.dumps({"ok": True, "result": result}, default=str)
    flagged = isinstance(result, dict) and bool(result.get("warnings"))
    return ToolOutcome(call_id, name, True, payload, bool(args.request_heartbeat), arguments, flagged)
