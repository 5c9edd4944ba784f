"""Admin for memory: blocks (edit with a reason, history, diff, revert, pin), the review queue, archival passages.

Every screen writes through memory.services, the same functions the API and the agent use, so provenance and
versioning are identical whoever makes the change. Another organisation's object is a 404, never a redirect.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Case, Count, IntegerField, Model, Q, QuerySet, Value, When
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import SafeString, mark_safe

from memory.models import ArchivalPassage, BlockTemplate, ChangeSource, MemoryBlock, PendingMemoryEdit
from memory.selectors import passage_search
from memory.services import (
    MemoryEditError,
    Provenance,
    VersionConflict,
    apply_append,
    apply_replace,
    block_create,
    block_delete,
    block_revert,
    block_set_pinned,
    block_set_value,
    passage_delete,
    passage_supersede,
    passage_update_text,
    pending_edit_approve,
    pending_edit_reject,
)
from tickets.admin import OrgScopedAdmin, staff_organization_id
from tickets.models import Customer, Organization, TicketMessage

# simple-history stores the change reason in a 100-character column: longer reasons would fail at the database.
REASON_MAX = 100
# pending_edit_approve prefixes the note with "approved agent edit #N: ", which must still fit in REASON_MAX.
DECISION_NOTE_MAX = 60

# ---------------------------------------------------------------------------------------------------------------
# Shared presentation helpers (also used by the customer page and the run trace in support_agent/admin.py)
# ---------------------------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")
MINUS = "\u2212"  # a real minus sign lines up with "+" in the diff gutter


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _inline_diff(old: str, new: str) -> tuple[SafeString, SafeString]:
    """One changed line as two HTML strings with the words that differ wrapped in <del> and <ins>."""
    old_tokens, new_tokens = _tokens(old), _tokens(new)
    old_html: list[str] = []
    new_html: list[str] = []
    matcher = difflib.SequenceMatcher(a=old_tokens, b=new_tokens, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        old_part, new_part = "".join(old_tokens[i1:i2]), "".join(new_tokens[j1:j2])
        if tag == "equal":
            old_html.append(format_html("{}", old_part))
            new_html.append(format_html("{}", new_part))
            continue
        if old_part:
            old_html.append(format_html("<del>{}</del>", old_part))
        if new_part:
            new_html.append(format_html("<ins>{}</ins>", new_part))
    return mark_safe("".join(old_html)), mark_safe("".join(new_html))  # noqa: S308 (parts escaped above)


def _diff_rows(old: str, new: str) -> list[tuple[str, str, SafeString]]:
    """(css class, gutter sign, html) per line: unchanged, removed or added, with word-level highlights."""
    old_lines, new_lines = old.splitlines(), new.splitlines()
    rows: list[tuple[str, str, SafeString]] = []
    matcher = difflib.SequenceMatcher(a=old_lines, b=new_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            rows += [("same", " ", format_html("{}", line)) for line in old_lines[i1:i2]]
            continue
        removed, added = old_lines[i1:i2], new_lines[j1:j2]
        paired = min(len(removed), len(added)) if tag == "replace" else 0
        pairs = [_inline_diff(removed[k], added[k]) for k in range(paired)]
        rows += [("del", MINUS, old_html) for old_html, _ in pairs]
        rows += [("del", MINUS, format_html("<del>{}</del>", line)) for line in removed[paired:]]
        rows += [("ins", "+", new_html) for _, new_html in pairs]
        rows += [("ins", "+", format_html("<ins>{}</ins>", line)) for line in added[paired:]]
    return rows


def _changed_chars(old: str, new: str) -> tuple[int, int]:
    """Characters removed and added, counted over the words that changed."""
    old_tokens, new_tokens = _tokens(old), _tokens(new)
    removed = added = 0
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old_tokens, b=new_tokens, autojunk=False).get_opcodes():
        if tag != "equal":
            removed += sum(map(len, old_tokens[i1:i2]))
            added += sum(map(len, new_tokens[j1:j2]))
    return removed, added


def diff_html(old: str, new: str) -> SafeString:
    """A readable, coloured diff of two texts: whole lines marked, changed words highlighted inside them."""
    if old == new:
        return format_html('<p class="sm-diff-empty">{}</p>', "No differences.")
    body = format_html_join(
        "",
        '<tr class="sm-diff-{}"><td class="sm-diff-sign">{}</td><td class="sm-diff-text">{}</td></tr>',
        _diff_rows(old, new),
    )
    removed, added = _changed_chars(old, new)
    stats = format_html(
        '<caption><span class="sm-removed">{}{} chars</span> <span class="sm-added">+{} chars</span></caption>',
        MINUS,
        removed,
        added,
    )
    return format_html('<table class="sm-diff">{}<tbody>{}</tbody></table>', stats, body)


def run_step_url(run_id: int, step_id: int | None = None) -> str:
    """Where an agent change's run (and step, as an anchor) is traced. Memory knows runs only by id."""
    url = reverse("admin:support_agent_agentrun_change", args=[run_id])
    return f"{url}#step-{step_id}" if step_id else url


def run_step_link(run_id: int | None, step_id: int | None) -> SafeString:
    if not run_id:
        return format_html("{}", "")
    label = f"run #{run_id}" + (f" · step #{step_id}" if step_id else "")
    return format_html('<a class="sm-run-link" href="{}">{}</a>', run_step_url(run_id, step_id), label)


def change_author_html(change: Any) -> SafeString:
    """Who made a change (a history row, a pending edit or a passage): staff user, agent run and step, or system."""
    source = getattr(change, "change_source", ChangeSource.SYSTEM)
    user = getattr(change, "history_user", None)
    if source == ChangeSource.AGENT:
        approved = format_html(" <span class='sm-muted'>approved by {}</span>", user.get_username()) if user else ""
        return format_html(
            '<span class="sm-badge sm-badge-agent">agent</span> {}{}',
            run_step_link(change.agent_run_id, change.agent_step_id),
            approved,
        )
    if source in (ChangeSource.STAFF, ChangeSource.API):
        who = user.get_username() if user else "unknown user"
        return format_html('<span class="sm-badge sm-badge-{}">{}</span> {}', source, source, who)
    return format_html('<span class="sm-badge sm-badge-system">{}</span>', "system")


def prompting_message_html(message_id: int | None) -> SafeString:
    """The message that prompted a change, quoted, with a link to it (the row may have been deleted since)."""
    if not message_id:
        return format_html("{}", "")
    message = TicketMessage.objects.filter(pk=message_id).first()
    if message is None:
        return format_html('<span class="sm-muted">message #{} (deleted)</span>', message_id)
    url = reverse("admin:tickets_ticketmessage_change", args=[message.pk])
    excerpt = message.body if len(message.body) <= 160 else message.body[:157] + "…"
    return format_html(
        '<blockquote class="sm-quote"><a href="{}">{} · {}</a> {}</blockquote>',
        url,
        message.get_author_role_display(),
        message.created_at.strftime("%Y-%m-%d %H:%M"),
        excerpt,
    )


def customer_page_url(customer_id: int) -> str:
    return reverse("admin:support_agent_customermemory_change", args=[customer_id])


def safe_next(request: HttpRequest, default: str) -> str:
    """The page to return to after a POST: ?next= when it stays on this site."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return default


def clean_text(value: str) -> str:
    # Browsers send textarea line breaks as CRLF; memory stores plain newlines so diffs and prompts stay clean.
    return value.replace("\r\n", "\n").replace("\r", "\n")


class ScopedObjectAdmin(OrgScopedAdmin):
    """Org-scoped admin with the custom pages' shared look-ups: an object the staff member may see, or 404."""

    def scoped_object(self, request: HttpRequest, object_id: str) -> Any:
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404("Not found")
        if not self.has_view_or_change_permission(request, obj):
            raise PermissionDenied
        return obj

    def page_context(self, request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
        return {**self.admin_site.each_context(request), "opts": self.model._meta, "title": title, **extra}


def _url(name: str, *args: Any) -> str:
    return reverse(f"admin:{name}", args=args)


# ---------------------------------------------------------------------------------------------------------------
# Memory blocks
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class StaleEdit:
    """A save refused because the block moved on: the version it is at now, and how the refused text differs."""

    version: int
    value: str
    last_change: Any
    diff: SafeString


class BlockCreateForm(forms.Form):
    label = forms.SlugField(max_length=64, help_text="Lower-case words joined by _ or -, e.g. billing_account.")
    description = forms.CharField(
        max_length=500, required=False, help_text="Tells the agent what belongs in the block; shown in its prompt."
    )
    value = forms.CharField(required=False, strip=False, widget=forms.Textarea(attrs={"rows": 6, "class": "sm-code"}))
    char_limit = forms.IntegerField(min_value=100, max_value=10_000, initial=2000)
    read_only = forms.BooleanField(required=False, help_text="Pinned: the agent may read it but not edit it.")
    reason = forms.CharField(max_length=REASON_MAX, help_text="Why this block exists. Kept in its history.")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        value, limit = clean_text(cleaned.get("value") or ""), cleaned.get("char_limit")
        cleaned["value"] = value
        if limit is not None and len(value) > limit:
            self.add_error("value", f"This is {len(value)} characters; the limit you chose is {limit}.")
        return cleaned


class BlockEditForm(forms.Form):
    value = forms.CharField(required=False, strip=False, widget=forms.Textarea(attrs={"rows": 12, "class": "sm-code"}))
    reason = forms.CharField(
        max_length=REASON_MAX, help_text="Why you are changing it. Kept in the block's history for everyone to see."
    )
    expected_version = forms.IntegerField(widget=forms.HiddenInput)

    def __init__(self, *args: Any, block: MemoryBlock, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.block = block

    def clean_value(self) -> str:
        value = clean_text(self.cleaned_data["value"])
        # Staff may shorten a block that is over its limit step by step, but never push one over it.
        if len(value) > self.block.char_limit and len(value) >= len(self.block.value):
            raise forms.ValidationError(
                f"This is {len(value)} characters; the block's limit is {self.block.char_limit}. Shorten it, "
                "or move details to archival memory."
            )
        return value


class RevertForm(forms.Form):
    history_id = forms.IntegerField(widget=forms.HiddenInput)
    reason = forms.CharField(max_length=REASON_MAX, required=False)


def block_last_change(block: MemoryBlock) -> Any:
    return block.history.select_related("history_user").order_by("-history_id").first()  # type: ignore[attr-defined]


@admin.register(MemoryBlock)
class MemoryBlockAdmin(ScopedObjectAdmin):
    list_display = ["label", "owner", "chars", "badges", "version", "updated_at"]
    list_filter = ["label", "read_only"]
    list_select_related = ["customer", "organization"]
    search_fields = ["label", "value", "customer__name", "customer__email"]

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None) -> Any:
        """A new block for one customer (?customer=ID) or, without one, for the whole organisation."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        customer = self._customer_for_new_block(request)
        organization = customer.organization if customer else self._staff_organization(request)
        form = BlockCreateForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            fields = dict(form.cleaned_data)
            reason = fields.pop("reason")
            provenance = Provenance(source=ChangeSource.STAFF, user=request.user, reason=reason)  # type: ignore[arg-type]
            try:
                block = block_create(organization=organization, customer=customer, provenance=provenance, **fields)
            except MemoryEditError as exc:
                form.add_error("label", str(exc))
            else:
                messages.success(request, f"Created the block “{block.label}”.")
                return HttpResponseRedirect(self._after_edit_url(request, block))
        context = self.page_context(
            request, "New memory block", form=form, customer=customer, organization=organization
        )
        return TemplateResponse(request, "admin/memory/memoryblock/add.html", context)

    def _customer_for_new_block(self, request: HttpRequest) -> Any:
        customer_id = request.GET.get("customer", "")
        if not customer_id:
            return None
        if not customer_id.isdigit():
            raise Http404("Not found")
        customers = Customer.objects.filter(pk=int(customer_id))
        org_id = staff_organization_id(request)
        customer = (customers if org_id is None else customers.filter(organization_id=org_id)).first()
        if customer is None:
            raise Http404("Not found")
        return customer

    def _staff_organization(self, request: HttpRequest) -> Organization:
        org_id = staff_organization_id(request)
        organization = Organization.objects.filter(pk=org_id).first() if org_id is not None and org_id != -1 else None
        if organization is None:
            # A superuser sees every organisation: an organisation-wide block needs one, so go through a customer.
            raise PermissionDenied("Open a customer of the organisation and add the block from their page.")
        return organization

    def delete_model(self, request: HttpRequest, obj: MemoryBlock) -> None:
        block_delete(
            block=obj,
            provenance=Provenance(source=ChangeSource.STAFF, user=request.user, reason="deleted in the console"),  # type: ignore[arg-type]
        )

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[MemoryBlock]) -> None:
        for block in queryset:
            self.delete_model(request, block)

    def response_delete(self, request: HttpRequest, obj_display: str, obj_id: Any) -> HttpResponse:
        response = super().response_delete(request, obj_display, obj_id)
        return HttpResponseRedirect(safe_next(request, response["Location"]))

    @admin.display(description="belongs to")
    def owner(self, block: MemoryBlock) -> SafeString:
        if block.customer_id is None:
            return format_html('<span class="sm-badge sm-badge-org">{}</span>', "organisation-wide")
        return format_html('<a href="{}">{}</a>', customer_page_url(block.customer_id), block.customer)

    @admin.display(description="characters")
    def chars(self, block: MemoryBlock) -> str:
        return f"{block.chars_current}/{block.char_limit}"

    def get_queryset(self, request: HttpRequest) -> QuerySet[MemoryBlock]:
        pending = Count("pending_edits", filter=Q(pending_edits__status=PendingMemoryEdit.Status.PENDING))
        return super().get_queryset(request).annotate(n_pending=pending)

    @admin.display(description="")
    def badges(self, block: MemoryBlock) -> SafeString:
        return block_badges(block, pending=getattr(block, "n_pending", 0))

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/pin/", wrap(self.pin_view), name="memory_memoryblock_pin"),
            path("<path:object_id>/revert/", wrap(self.revert_view), name="memory_memoryblock_revert"),
            *super().get_urls(),
        ]

    def _can_edit(self, request: HttpRequest, block: MemoryBlock) -> bool:
        return self.has_change_permission(request, block)

    def _after_edit_url(self, request: HttpRequest, block: MemoryBlock) -> str:
        default = customer_page_url(block.customer_id) if block.customer_id else _url("memory_memoryblock_changelist")
        return safe_next(request, default)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """Edit a block's value with a reason, through block_set_value (a new version with provenance)."""
        block = self.scoped_object(request, object_id)
        can_edit = self._can_edit(request, block)
        form = BlockEditForm(initial={"value": block.value, "expected_version": block.version}, block=block)
        if request.method == "POST":
            if not can_edit:
                raise PermissionDenied
            form = BlockEditForm(request.POST, block=block)
            if form.is_valid():
                response = self._save_edit(request, block, form)
                if response is not None:
                    return response
        context = self.page_context(
            request,
            f"Edit memory block “{block.label}”",
            memblock=block,
            form=form,
            can_edit=can_edit,
            badges=block_badges(block),
            last_change=block_last_change(block),
            next_url=safe_next(request, ""),
            conflict=getattr(form, "conflict", None),
        )
        return TemplateResponse(request, "admin/memory/memoryblock/edit.html", context)

    def _save_edit(self, request: HttpRequest, block: MemoryBlock, form: BlockEditForm) -> HttpResponse | None:
        provenance = Provenance(source=ChangeSource.STAFF, user=request.user, reason=form.cleaned_data["reason"])  # type: ignore[arg-type]
        try:
            saved = block_set_value(
                block=block,
                value=form.cleaned_data["value"],
                provenance=provenance,
                expected_version=form.cleaned_data["expected_version"],
            )
        except VersionConflict as exc:
            # Keep the staff member's text in the form and show the newer version beside it, with a diff; the
            # next save (now against that version) is an informed choice, and its button says what it replaces.
            block.refresh_from_db()
            data = request.POST.copy()
            data["expected_version"] = str(block.version)
            form.data = data
            form.conflict = StaleEdit(  # type: ignore[attr-defined]
                version=block.version,
                value=block.value,
                last_change=block_last_change(block),
                diff=diff_html(block.value, form.cleaned_data["value"]),
            )
            form.add_error(None, f"{exc} Someone else saved it meanwhile: read their text below, then save again.")
            return None
        if saved.version == form.cleaned_data["expected_version"]:
            messages.info(request, f"“{block.label}” was already exactly that; nothing changed.")
        else:
            messages.success(request, f"Saved “{block.label}” as version {saved.version}.")
        return HttpResponseRedirect(self._after_edit_url(request, saved))

    def history_view(self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None) -> Any:
        """Every version with who/why/prompting message, and a diff between any two (?a=&b= history ids)."""
        block = self.scoped_object(request, object_id)
        versions = list(
            block.history.select_related("history_user").order_by("-history_id")[:500]  # type: ignore[attr-defined]
        )
        older, newer = _pick_versions(request, versions)
        rows = [_history_row(row, versions, index) for index, row in enumerate(versions)]
        context = self.page_context(
            request,
            f"History of “{block.label}”",
            memblock=block,
            badges=block_badges(block),
            rows=rows,
            older=older,
            newer=newer,
            diff=diff_html(older.value, newer.value) if older and newer else None,
            can_edit=self._can_edit(request, block),
        )
        return TemplateResponse(request, "admin/memory/memoryblock/history.html", context)

    def revert_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Confirm (GET) and perform (POST) a revert: the old value becomes a new version."""
        block = self.scoped_object(request, object_id)
        if not self._can_edit(request, block):
            raise PermissionDenied
        form = RevertForm(request.POST if request.method == "POST" else request.GET)
        if not form.is_valid():
            raise Http404("No such version of this block")
        target = block.history.filter(history_id=form.cleaned_data["history_id"]).first()  # type: ignore[attr-defined]
        if target is None:
            raise Http404("No such version of this block")
        if request.method == "POST":
            reverted = block_revert(
                block=block,
                history_id=target.history_id,
                provenance=Provenance(
                    source=ChangeSource.STAFF,
                    user=request.user,  # type: ignore[arg-type]
                    reason=form.cleaned_data["reason"] or f"reverted to version {target.version}",
                ),
            )
            messages.success(request, f"Reverted “{block.label}” to version {target.version}'s text.")
            return HttpResponseRedirect(_url("memory_memoryblock_history", reverted.pk))
        context = self.page_context(
            request,
            f"Revert “{block.label}” to version {target.version}?",
            memblock=block,
            target=target,
            form=form,
            diff=diff_html(block.value, target.value),
        )
        return TemplateResponse(request, "admin/memory/memoryblock/revert.html", context)

    def pin_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        block = self.scoped_object(request, object_id)
        if request.method != "POST":
            return HttpResponseRedirect(_url("memory_memoryblock_change", block.pk))
        if not self._can_edit(request, block):
            raise PermissionDenied
        pinned = request.POST.get("pinned") == "1"
        block_set_pinned(
            block=block,
            pinned=pinned,
            provenance=Provenance(source=ChangeSource.STAFF, user=request.user),  # type: ignore[arg-type]
        )
        verb = "Pinned" if pinned else "Unpinned"
        messages.success(request, f"{verb} “{block.label}”: the agent {'can no longer' if pinned else 'may'} edit it.")
        return HttpResponseRedirect(self._after_edit_url(request, block))


def block_badges(block: MemoryBlock, *, pending: int = 0) -> SafeString:
    badges: list[tuple[str, str]] = []
    if block.read_only:
        badges.append(("pinned", "pinned"))
    if block.over_limit:
        badges.append(("over", "over limit"))
    if pending:
        badges.append(("pending", f"{pending} pending"))
    if block.customer_id is None:
        badges.append(("org", "organisation-wide"))
    return format_html_join(" ", '<span class="sm-badge sm-badge-{}">{}</span>', badges)


def _history_id(request: HttpRequest, name: str) -> int | None:
    raw = request.GET.get(name, "")
    if not raw:
        return None
    if not raw.isdigit():
        raise Http404("No such version of this block")
    return int(raw)


def _pick_versions(request: HttpRequest, versions: list[Any]) -> tuple[Any, Any]:
    """The two versions to compare: ?a= and ?b= (history ids), by default the latest change."""
    by_id = {row.history_id: row for row in versions}
    a_id, b_id = _history_id(request, "a"), _history_id(request, "b")
    if (a_id is not None and a_id not in by_id) or (b_id is not None and b_id not in by_id):
        raise Http404("No such version of this block")
    newer = by_id[b_id] if b_id is not None else (versions[0] if versions else None)
    older = by_id[a_id] if a_id is not None else (versions[1] if len(versions) > 1 else newer)
    if older is not None and newer is not None and older.history_id > newer.history_id:
        older, newer = newer, older
    return older, newer


@dataclass
class HistoryRow:
    row: Any
    author: SafeString
    prompting: SafeString
    previous_id: int | None
    is_current: bool


def _history_row(row: Any, versions: list[Any], index: int) -> HistoryRow:
    previous = versions[index + 1] if index + 1 < len(versions) else None
    return HistoryRow(
        row=row,
        author=change_author_html(row),
        prompting=prompting_message_html(row.prompting_message_id),
        previous_id=previous.history_id if previous else None,
        is_current=index == 0,
    )


# ---------------------------------------------------------------------------------------------------------------
# The review queue
# ---------------------------------------------------------------------------------------------------------------


class DecideForm(forms.Form):
    note = forms.CharField(max_length=DECISION_NOTE_MAX, required=False)


@dataclass
class EditCard:
    """One pending edit as a reviewer sees it."""

    edit: PendingMemoryEdit
    author: SafeString
    prompting: SafeString
    diff: SafeString
    block_moved: bool
    approval_preview: SafeString | None
    approval_problem: str


def edit_card(edit: PendingMemoryEdit) -> EditCard:
    block = edit.block
    moved = edit.status == PendingMemoryEdit.Status.PENDING and block.version != edit.base_version
    preview: SafeString | None = None
    problem = ""
    if moved:
        # Approval re-applies the edit to the block as it is now, so show what that would produce.
        try:
            if edit.operation == PendingMemoryEdit.Operation.APPEND:
                outcome = apply_append(block.value, edit.new_content)
            else:
                outcome = apply_replace(block.value, edit.old_content, edit.new_content)
            preview = diff_html(block.value, outcome)
        except MemoryEditError as exc:
            problem = str(exc)
    return EditCard(
        edit=edit,
        author=change_author_html(edit),
        prompting=prompting_message_html(edit.prompting_message_id),
        diff=diff_html(edit.base_value, edit.proposed_value),
        block_moved=moved,
        approval_preview=preview,
        approval_problem=problem,
    )


@admin.register(PendingMemoryEdit)
class PendingMemoryEditAdmin(ScopedObjectAdmin):
    """The review queue: agent edits awaiting a memory reviewer, across the organisation."""

    list_select_related = ["block", "customer"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # only the agent proposes edits

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # decisions are records

    def can_decide(self, request: HttpRequest) -> bool:
        """Memory reviewers (change permission on pending edits) and superusers approve or reject."""
        return self.has_change_permission(request)

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [path("decide/", wrap(self.decide_view), name="memory_pendingmemoryedit_decide"), *super().get_urls()]

    def _queue_queryset(self, request: HttpRequest) -> QuerySet[PendingMemoryEdit]:
        return self.get_queryset(request).select_related(
            "block", "block__customer", "customer", "decided_by", "organization"
        )

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        statuses = dict(PendingMemoryEdit.Status.choices)
        status = request.GET.get("status", PendingMemoryEdit.Status.PENDING)
        if status not in statuses:
            status = PendingMemoryEdit.Status.PENDING
        edits = self._queue_queryset(request).filter(status=status)
        # Pending: oldest first (first come, first reviewed). Decided: most recent decision first.
        edits = edits.order_by("created_at" if status == PendingMemoryEdit.Status.PENDING else "-decided_at")
        page = Paginator(edits, 25).get_page(request.GET.get("page"))
        counts = {value: self.get_queryset(request).filter(status=value).count() for value in statuses}
        tabs = [(value, label, counts[value], value == status) for value, label in statuses.items()]
        context = self.page_context(
            request,
            "Review queue",
            cards=[edit_card(edit) for edit in page.object_list],
            page=page,
            status=status,
            tabs=tabs,
            can_decide=self.can_decide(request),
            form=DecideForm(),
            queue_url=request.get_full_path(),
        )
        return TemplateResponse(request, "admin/memory/pendingmemoryedit/queue.html", context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        edit = self.scoped_object(request, object_id)
        context = self.page_context(
            request,
            f"Agent edit #{edit.pk} to “{edit.block.label}”",
            cards=[edit_card(edit)],
            can_decide=self.can_decide(request),
            form=DecideForm(),
            single=True,
            queue_url=request.get_full_path(),
        )
        return TemplateResponse(request, "admin/memory/pendingmemoryedit/queue.html", context)

    def decide_view(self, request: HttpRequest) -> HttpResponse:
        """Approve or reject one (a card's button) or many (the checked cards) through the review services."""
        if request.method != "POST":
            return HttpResponseRedirect(_url("memory_pendingmemoryedit_changelist"))
        if not self.can_decide(request):
            raise PermissionDenied
        back = safe_next(request, _url("memory_pendingmemoryedit_changelist"))
        form = DecideForm(request.POST)
        decision, ids = _decision_and_ids(request)
        if not form.is_valid() or decision is None or not ids:
            messages.error(request, _decide_input_problem(form, decision, ids))
            return HttpResponseRedirect(back)
        edits = list(self.get_queryset(request).filter(pk__in=ids).order_by("created_at"))
        if len(edits) != len(ids):
            raise Http404("No such pending edit")
        self._decide(request, edits, decision, form.cleaned_data["note"])
        return HttpResponseRedirect(back)

    def _decide(self, request: HttpRequest, edits: list[PendingMemoryEdit], decision: str, note: str) -> None:
        service = pending_edit_approve if decision == "approve" else pending_edit_reject
        done = 0
        for edit in edits:
            try:
                service(edit=edit, user=request.user, note=note)  # type: ignore[arg-type]
                done += 1
            except MemoryEditError as exc:
                messages.warning(request, f"Edit #{edit.pk} to “{edit.block.label}”: {exc}")
        if done:
            verb = "Approved" if decision == "approve" else "Rejected"
            messages.success(request, f"{verb} {done} edit{'s' if done != 1 else ''}.")


def _decision_and_ids(request: HttpRequest) -> tuple[str | None, list[int]]:
    """A card's own button posts one=approve:ID; the bulk buttons post decision=... with the checked ids."""
    one = request.POST.get("one", "")
    if one:
        decision, _, raw_id = one.partition(":")
        raw_ids = [raw_id]
    else:
        decision, raw_ids = request.POST.get("decision", ""), request.POST.getlist("selected")
    if decision not in {"approve", "reject"}:
        return None, []
    if not all(raw.isdigit() for raw in raw_ids):
        return decision, []
    return decision, sorted({int(raw) for raw in raw_ids})


def _decide_input_problem(form: DecideForm, decision: str | None, ids: list[int]) -> str:
    if not form.is_valid():
        return f"The note is too long: at most {DECISION_NOTE_MAX} characters."
    if decision is None:
        return "Choose approve or reject."
    return "Select at least one edit."


# ---------------------------------------------------------------------------------------------------------------
# Archival passages
# ---------------------------------------------------------------------------------------------------------------


class PassageTextForm(forms.Form):
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 5, "class": "sm-code"}), max_length=20000)
    tags = forms.CharField(required=False, max_length=500, help_text="Comma-separated.")

    def clean_text(self) -> str:
        text = clean_text(self.cleaned_data["text"]).strip()
        if not text:
            raise forms.ValidationError("The text is empty.")
        return text

    def tag_list(self) -> list[str]:
        return [tag.strip() for tag in self.cleaned_data.get("tags", "").split(",") if tag.strip()]


class PassageStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("current", "Current"), ("superseded", "Superseded")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "current":
            return queryset.filter(invalidated_at__isnull=True)
        if self.value() == "superseded":
            return queryset.filter(invalidated_at__isnull=False)
        return queryset


def passage_badges(passage: ArchivalPassage) -> SafeString:
    badges: list[tuple[str, str]] = []
    if passage.invalidated_at is not None:
        badges.append(("superseded", "superseded"))
    if passage.embedding_model == "":
        badges.append(("pending", "embedding pending"))
    if passage.customer_id is None:
        badges.append(("org", "organisation-wide"))
    return format_html_join(" ", '<span class="sm-badge sm-badge-{}">{}</span>', badges)


@admin.register(ArchivalPassage)
class ArchivalPassageAdmin(ScopedObjectAdmin):
    """Archival memory: hybrid search, correct in place (re-embedded), supersede, delete."""

    list_display = ["excerpt", "owner", "tag_list", "state", "created_at"]
    list_filter = [PassageStateFilter, "embedding_model"]
    list_select_related = ["customer"]
    search_fields = ["text"]
    search_help_text = "Hybrid search (meaning and words) over current passages of your organisation."
    actions = ["delete_selected"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # staff add facts on the customer's page, where the owner is unambiguous

    @admin.display(description="passage")
    def excerpt(self, passage: ArchivalPassage) -> str:
        return passage.text if len(passage.text) <= 140 else passage.text[:137] + "…"

    @admin.display(description="belongs to")
    def owner(self, passage: ArchivalPassage) -> SafeString:
        if passage.customer_id is None:
            return format_html('<span class="sm-badge sm-badge-org">{}</span>', "organisation-wide")
        return format_html('<a href="{}">{}</a>', customer_page_url(passage.customer_id), passage.customer)

    @admin.display(description="tags")
    def tag_list(self, passage: ArchivalPassage) -> str:
        return ", ".join(passage.tags)

    @admin.display(description="")
    def state(self, passage: ArchivalPassage) -> SafeString:
        return passage_badges(passage)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[ArchivalPassage], search_term: str
    ) -> tuple[QuerySet[ArchivalPassage], bool]:
        """The admin's search box runs the same hybrid search as the agent (get_ordering keeps its ranking)."""
        if not search_term.strip():
            return queryset, False
        return queryset.filter(pk__in=self._ranked_ids(request, search_term)), False

    def get_ordering(self, request: HttpRequest) -> list[Any]:
        term = request.GET.get("q", "").strip()
        ranked = self._ranked_ids(request, term) if term else []
        if not ranked:
            return ["-created_at"]
        rank = Case(*[When(pk=pk, then=Value(i)) for i, pk in enumerate(ranked)], output_field=IntegerField())
        return [rank.asc()]

    def _ranked_ids(self, request: HttpRequest, query: str) -> list[int]:
        # Ordering and filtering both need the ranking: search once per request.
        cache: dict[str, list[int]] = request.__dict__.setdefault("_sm_passage_search", {})
        if query not in cache:
            org_id = staff_organization_id(request)
            organizations = Organization.objects.all() if org_id is None else Organization.objects.filter(pk=org_id)
            cache[query] = [
                passage.pk
                for organization in organizations
                for passage in passage_search(
                    organization=organization, customer=None, query=query[:500], page_size=50
                ).results
            ]
        return cache[query]

    def delete_model(self, request: HttpRequest, obj: ArchivalPassage) -> None:
        passage_delete(passage=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ArchivalPassage]) -> None:
        for passage in queryset:
            passage_delete(passage=passage)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        passage = self.scoped_object(request, object_id)
        can_edit = self.has_change_permission(request, passage) and passage.invalidated_at is None
        initial = {"text": passage.text, "tags": ", ".join(passage.tags)}
        correct_form, supersede_form = PassageTextForm(initial=initial), PassageTextForm(initial=initial)
        if request.method == "POST":
            if not can_edit:
                raise PermissionDenied
            action = request.POST.get("action")
            form = PassageTextForm(request.POST)
            if action == "supersede":
                supersede_form = form
            else:
                correct_form = form
            if form.is_valid() and action in {"correct", "supersede"}:
                response = self._save_passage(request, passage, form, action)
                if response is not None:
                    return response
        context = self.page_context(
            request,
            "Archival passage",
            passage=passage,
            badges=passage_badges(passage),
            author=change_author_html(passage),
            prompting=prompting_message_html(passage.prompting_message_id),
            predecessors=list(passage.supersedes.all()),
            correct_form=correct_form,
            supersede_form=supersede_form,
            can_edit=can_edit,
            can_delete=self.has_delete_permission(request, passage),
        )
        return TemplateResponse(request, "admin/memory/archivalpassage/detail.html", context)

    def _save_passage(
        self, request: HttpRequest, passage: ArchivalPassage, form: PassageTextForm, action: str
    ) -> HttpResponse | None:
        provenance = Provenance(source=ChangeSource.STAFF, user=request.user)  # type: ignore[arg-type]
        try:
            if action == "supersede":
                result = passage_supersede(
                    passage=passage, new_text=form.cleaned_data["text"], tags=form.tag_list(), provenance=provenance
                )
                messages.success(request, "Superseded: the old passage stays visible to staff, out of search.")
            else:
                result = passage_update_text(passage=passage, text=form.cleaned_data["text"], provenance=provenance)
                messages.success(request, "Corrected: searchable by words now, by meaning once re-embedded.")
        except MemoryEditError as exc:
            form.add_error("text", str(exc))
            return None
        return HttpResponseRedirect(_url("memory_archivalpassage_change", result.pk))


@admin.register(BlockTemplate)
class BlockTemplateAdmin(OrgScopedAdmin):
    """Blocks every customer of the organisation gets beside the defaults, from their agent's next run on."""

    list_display = ["label", "description", "char_limit", "read_only", "organization"]
    search_fields = ["label", "description"]
    fields = ("organization", "label", "description", "value", "char_limit", "read_only")

    def get_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        # Staff belong to one organisation: the template is theirs. Superusers choose.
        return self.fields if staff_organization_id(request) is None else self.fields[1:]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form_class = super().get_form(request, obj, change, **kwargs)
        org_id = staff_organization_id(request)

        class TemplateForm(form_class):  # type: ignore[valid-type,misc]
            def clean(self) -> dict[str, Any]:
                cleaned = super().clean()
                organization_id = org_id if org_id is not None else getattr(cleaned.get("organization"), "pk", None)
                taken = BlockTemplate.objects.filter(organization_id=organization_id or 0, label=cleaned.get("label"))
                if self.instance.pk:
                    taken = taken.exclude(pk=self.instance.pk)
                if taken.exists():
                    self.add_error("label", "The organisation already has a template with this label.")
                return cleaned

        return TemplateForm

    def save_model(self, request: HttpRequest, obj: BlockTemplate, form: Any, change: bool) -> None:
        org_id = staff_organization_id(request)
        if org_id is not None:
            obj.organization_id = org_id
        super().save_model(request, obj, form, change)
