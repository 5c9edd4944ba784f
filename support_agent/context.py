"""Context compilation: what the model sees before every call, in the design's order, with token counts.

Order: system instructions; core memory blocks; memory statistics; the recursive summary of evicted
messages (these four form the system message); the in-context messages (recall memory newer than the
eviction cut); the new event; then this run's own tool exchanges, which answer it. Compiling is a pure read;
``context_evict`` is the one write here, called by the loop when a compiled context overflows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet

from memory.models import prompt_inert
from memory.selectors import blocks_for_customer, passages_for
from support_agent.llm import Backend, extractive_summary
from support_agent.models import AgentContextState
from support_agent.tokens import (
    TOKENS_REPLY_PRIMING,
    count_message_tokens,
    count_tokens,
    count_tools_tokens,
    truncate_to_tokens,
)
from tickets.models import Customer, TicketMessage
from tickets.selectors import message_list

MEMORY_PRESSURE_RATIO = 0.75
# After an eviction the context should be back to this share of the window, leaving room to work.
EVICTION_TARGET_RATIO = 0.6
# The recursive summary may take at most this share of the window.
SUMMARY_RATIO = 0.1
SUMMARY_INSTRUCTION = (
    "You keep the running summary of a customer-support conversation whose oldest messages are leaving the "
    "model's context. Merge the previous summary and the messages below into one summary: who the customer is, "
    "their problems and each one's status, what was tried, promises made, dates. Drop pleasantries."
)
_BATCH = 200

SYSTEM_INSTRUCTIONS = """\
You are a customer-support agent with long-term memory, working for the organisation described in the \
persona and policies blocks below. You act only through tool calls.

How you work:
- Reply to the customer only with send_message. Text outside send_message is not delivered.
- Every tool takes request_heartbeat. Set it to true when you need another step after the tool runs \
(for example to read search results before answering); leave it false on your final call.
- If a tool fails, its error comes back to you as the tool result: fix the arguments and try again.

Your memory:
- Core memory (below) is always in front of you. Keep it current: core_memory_append adds a line, \
core_memory_replace changes text that must match exactly once. Record durable facts about the customer \
(who they are, products, preferences, open issues) as soon as you learn them. Read-only blocks cannot be edited.
- Recall memory holds every message ever exchanged with this customer, including those no longer in \
this prompt: conversation_search finds them by words and dates.
- Archival memory holds facts, solved-ticket summaries and documents: archival_memory_insert stores one, \
archival_memory_search finds them, archival_memory_supersede replaces one that is no longer true.
- The ticket tools (list_tickets, get_ticket, search_tickets) read this customer's tickets.
Never invent history: search before you say what happened before."""

STAFF_AUDIENCE_INSTRUCTIONS = """\
This run's output is read by support staff only. Messages marked as internal notes were written for staff and \
the customer never saw them: use them to inform staff, never quote them to the customer, and never copy them \
into core memory (every conversation with the customer reads core memory). Passages you store in this run are \
kept for staff only."""

CONSOLIDATION_INSTRUCTIONS = """\
This is a consolidation run, not a conversation: a ticket was solved. Do not message the customer. \
Update core memory so it stays true (remove the solved problem from open_issues, record anything durable you \
learned about the customer), then stop by leaving request_heartbeat false."""


@dataclass
class ContextUnit:
    """Messages that enter and leave the context together: one stored message, or a tool call with its results."""

    messages: list[dict[str, Any]]
    tokens: int
    source: str  # "recall" (a stored TicketMessage) or "run" (this run's own tool exchange)
    message_id: int | None = None
    created_at: datetime | None = None
    internal: bool = False  # an internal note (staff-audience runs only): never folded into the shared summary


@dataclass
class CompiledContext:
    messages: list[dict[str, Any]]
    tokens_total: int
    tokens_by_section: dict[str, int]
    context_window: int
    memory_pressure: bool
    units: list[ContextUnit] = field(default_factory=list)
    # Messages newer than the eviction cut but too old to fit even one window: they are evicted on overflow.
    older_not_loaded: int = 0
    # The organisation's budget for recent messages in the prompt, and what the loaded ones take of it.
    recent_budget: int = 0
    recent_tokens: int = 0

    @property
    def overflow(self) -> bool:
        """Past the window, or more recent messages than the budget: the oldest go to the summary."""
        over_budget = self.recent_budget > 0 and self.recent_tokens > self.recent_budget
        return self.tokens_total >= self.context_window or over_budget

    def excess_tokens(self) -> int:
        """How many tokens eviction must move out: down to 60% of the window, and of the recent-message budget."""
        excess = self.tokens_total - int(EVICTION_TARGET_RATIO * self.context_window)
        if self.recent_budget > 0:
            excess = max(excess, self.recent_tokens - int(EVICTION_TARGET_RATIO * self.recent_budget))
        return excess


def context_window_for(customer: Customer) -> int:
    return customer.organization.context_window_tokens or settings.SUPPORTMEM_CONTEXT_WINDOW


def recent_budget_for(customer: Customer) -> int:
    """Tokens of recent messages kept in the prompt; older ones are summarised and found by recall search."""
    return customer.organization.recent_messages_tokens or settings.SUPPORTMEM_RECENT_MESSAGES_TOKENS


def context_state_get(*, customer: Customer) -> AgentContextState:
    """The customer's summary and eviction cut; an unsaved blank one when nothing was evicted yet."""
    return AgentContextState.objects.filter(customer=customer).first() or AgentContextState(customer=customer)


def when_text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def message_to_chat(message: TicketMessage) -> dict[str, Any]:
    """A stored message as the model sees it in its conversation. Internal notes reach only staff-audience
    runs (``compile_context(include_internal=True)``) and are marked as such, never as words to the customer."""
    where = f"{when_text(message.created_at)}" + (f" · ticket #{message.ticket_id}" if message.ticket_id else "")
    if not message.is_public:
        who = f" by {message.get_author_role_display().lower()}" + (
            f" ({message.author_name})" if message.author_name else ""
        )
        return {
            "role": "system",
            "content": f"[{where}] Internal note{who}, staff only, the customer never saw it: {message.body}",
        }
    if message.author_role == TicketMessage.Role.CUSTOMER:
        return {"role": "user", "content": f"[{where}] {message.body}"}
    if message.author_role == TicketMessage.Role.AGENT:
        return {"role": "assistant", "content": message.body}
    if message.author_role == TicketMessage.Role.STAFF:
        who = f" ({message.author_name})" if message.author_name else ""
        return {"role": "system", "content": f"[{where}] Support staff{who} wrote to the customer: {message.body}"}
    return {"role": "system", "content": f"[{where}] Event: {message.body}"}


def core_memory_text(customer: Customer) -> str:
    """Core memory rendered from the database every time, so a staff correction shows at the next step."""
    blocks = blocks_for_customer(customer=customer)
    rendered = "\n".join(block.render() for block in blocks) or "(no memory blocks)"
    return f"### Core memory\n{rendered}"


def _run_units(run_messages: list[dict[str, Any]]) -> list[ContextUnit]:
    """Group this run's messages so an assistant tool call always travels with its tool results."""
    units: list[ContextUnit] = []
    for message in run_messages:
        if message.get("role") == "tool" and units:
            units[-1].messages.append(message)
            units[-1].tokens += count_message_tokens(message)
        else:
            units.append(ContextUnit(messages=[message], tokens=count_message_tokens(message), source="run"))
    return units


def _in_context_messages(
    customer: Customer, state: AgentContextState, exclude_id: int | None, until: datetime | None, include_internal: bool
) -> QuerySet[TicketMessage]:
    messages = message_list(customer=customer, include_internal=include_internal)
    if exclude_id is not None:
        messages = messages.exclude(pk=exclude_id)
    if state.evicted_until_at is not None:
        cut_at, cut_id = state.evicted_until_at, state.evicted_until_message_id or 0
        messages = messages.filter(Q(created_at__gt=cut_at) | Q(created_at=cut_at, pk__gt=cut_id))
    if until is not None:
        messages = messages.filter(created_at__lte=until)
    return messages


def _recall_units(messages: QuerySet[TicketMessage], budget: int) -> tuple[list[ContextUnit], int]:
    """The newest in-context messages, read newest first until one more than the budget holds.

    Stopping just past the budget keeps compilation cheap for a customer with years of history while still
    showing the overflow; returns the units (oldest first) and how many older messages were not read.
    """
    units: list[ContextUnit] = []
    used, offset = 0, 0
    newest_first = messages.order_by("-created_at", "-id").only(
        "id", "body", "author_role", "author_name", "ticket_id", "created_at", "is_public"
    )
    while True:
        batch = list(newest_first[offset : offset + _BATCH])
        for message in batch:
            chat = message_to_chat(message)
            tokens = count_message_tokens(chat)
            units.append(ContextUnit([chat], tokens, "recall", message.pk, message.created_at, not message.is_public))
            used += tokens
            if used > budget:
                return list(reversed(units)), messages.count() - len(units)
        if len(batch) < _BATCH:
            return list(reversed(units)), 0
        offset += _BATCH


def _stats_text(customer: Customer, in_context: int, total_messages: int, include_internal: bool) -> str:
    passages = passages_for(
        organization=customer.organization, customer=customer, include_staff_only=include_internal
    ).count()
    out_of_context = max(total_messages - in_context, 0)
    return (
        "### Memory statistics\n"
        f"{out_of_context} earlier messages in recall memory are not shown here "
        f"({total_messages} in all); {passages} passages in archival memory. "
        "Use conversation_search and archival_memory_search to read them."
    )


def _pressure_text(tokens_total: int, window: int) -> str:
    percent = round(100 * tokens_total / window)
    return (
        f"### Memory pressure\nThe context window is {percent}% full. Save what matters now "
        "(core_memory_append, archival_memory_insert): the oldest messages will soon leave this prompt "
        "and survive only in recall memory and a short summary."
    )


def compile_context(
    *,
    customer: Customer,
    new_event: str | None = None,
    new_event_message: TicketMessage | None = None,
    run_messages: list[dict[str, Any]] | None = None,
    until: datetime | None = None,
    tools: list[dict[str, Any]] | None = None,
    instructions: str | None = None,
    include_internal: bool = False,
) -> CompiledContext:
    """Build the prompt for one model call. Pure read: it never evicts, summarises or writes.

    ``include_internal`` is for staff-audience runs only: internal notes and staff-only passages are then
    shown (marked internal); by default the context is what a customer may be told.

    ``new_event_message`` is a stored message that is the new event (shown last, not also in history);
    ``run_messages`` are this run's tool exchanges; ``until`` hides messages stored after the run began
    (its own replies, which ``run_messages`` already holds); ``tools`` are counted into the system section.
    """
    window = context_window_for(customer)
    state = context_state_get(customer=customer)
    system_text = instructions or SYSTEM_INSTRUCTIONS
    if include_internal:
        system_text = f"{system_text}\n\n{STAFF_AUDIENCE_INSTRUCTIONS}"
    core_text = core_memory_text(customer)
    # The summary is written from customers' words: made inert like a block's value.
    summary = prompt_inert(state.summary)
    summary_text = f"### Summary of messages moved out of context\n{summary}" if state.summary else ""
    event_text = new_event if new_event is not None else ""
    if new_event_message is not None and not event_text:
        event_text = event_for_message(new_event_message)
    run_units = _run_units(run_messages or [])
    sections = {
        "system": count_tokens(system_text) + count_tools_tokens(tools or []) + 2 * TOKENS_REPLY_PRIMING,
        "core_memory": count_tokens(core_text),
        "memory_stats": 60,  # provisional: the real figure needs the in-context count, computed below
        "summary": count_tokens(summary_text),
        "messages": sum(unit.tokens for unit in run_units),
        "new_event": count_message_tokens({"content": event_text}) if event_text else 0,
    }
    exclude_id = new_event_message.pk if new_event_message else None
    in_context = _in_context_messages(customer, state, exclude_id, until, include_internal)
    recent_budget = recent_budget_for(customer)
    recall_units, not_loaded = _recall_units(in_context, min(window - sum(sections.values()), recent_budget))
    total_messages = message_list(customer=customer, include_internal=include_internal).count()
    in_context_count = len(recall_units) + (1 if new_event_message else 0)
    stats_text = _stats_text(customer, in_context_count, total_messages, include_internal)
    sections["memory_stats"] = count_tokens(stats_text)
    sections["messages"] += sum(unit.tokens for unit in recall_units)
    parts = [system_text, core_text, stats_text, summary_text]
    pressure = sum(sections.values()) >= MEMORY_PRESSURE_RATIO * window
    if pressure:
        warning = _pressure_text(sum(sections.values()), window)
        parts.append(warning)
        sections["system"] += count_tokens(warning)
    # The run's own tool exchanges answer the new event, so they follow it.
    messages = [{"role": "system", "content": "\n\n".join(part for part in parts if part)}]
    messages += [message for unit in recall_units for message in unit.messages]
    if event_text:
        messages.append({"role": "user", "content": event_text})
    messages += [message for unit in run_units for message in unit.messages]
    return CompiledContext(
        messages=messages,
        tokens_total=sum(sections.values()),
        tokens_by_section=sections,
        context_window=window,
        memory_pressure=pressure,
        units=recall_units + run_units,
        older_not_loaded=not_loaded,
        recent_budget=recent_budget,
        recent_tokens=sum(unit.tokens for unit in recall_units),
    )


def event_for_message(message: TicketMessage) -> str:
    """A new customer message as the new event. The header format is stable: the offline model parses it."""
    ticket = message.ticket
    where = f' on ticket #{ticket.pk} "{ticket.subject}"' if ticket is not None else ""
    return f"New message from the customer{where} ({when_text(message.created_at)}):\n{message.body}"


def eviction_plan(compiled: CompiledContext, *, target_tokens: int | None = None) -> list[ContextUnit]:
    """The oldest units to move out so the context drops to target_tokens (by default: 60% of the window and of
    the recent-message budget). Pure.

    Units are whole (a tool call never leaves without its results) and the newest unit always stays,
    so the model keeps the result it is acting on.
    """
    excess = compiled.excess_tokens() if target_tokens is None else compiled.tokens_total - target_tokens
    plan: list[ContextUnit] = []
    for unit in compiled.units[:-1]:
        if excess <= 0:
            break
        plan.append(unit)
        excess -= unit.tokens
    return plan


def _unit_line(unit: ContextUnit) -> str:
    parts = []
    for message in unit.messages:
        text = " ".join(str(message.get("content") or "").split())
        calls = ", ".join(c["function"]["name"] for c in message.get("tool_calls") or [])
        if calls:
            text = f"called {calls}" + (f" ({text})" if text else "")
        parts.append(f"{message.get('role')}: {text}")
    return " | ".join(parts)


def context_evict(
    *, customer: Customer, compiled: CompiledContext, run_messages: list[dict[str, Any]], backend: Backend
) -> int:
    """Move the oldest in-context messages out of the prompt into the recursive summary. Returns how many
    units left. Stored messages move behind the eviction cut (still in recall memory, still searchable);
    this run's own tool exchanges are removed from ``run_messages`` whole, call and results together."""
    plan = eviction_plan(compiled)
    if not plan:
        return 0
    # The summary is shared by every later run of the customer, whatever its audience: internal notes stay out
    # of it (they remain in recall memory, where staff-audience runs find them).
    lines = [_unit_line(unit) for unit in plan if not unit.internal]
    if compiled.older_not_loaded:
        lines.insert(0, f"({compiled.older_not_loaded} older messages went to recall memory unread.)")
    budget = max(int(SUMMARY_RATIO * compiled.context_window), 100)
    previous = context_state_get(customer=customer).summary
    fallback = extractive_summary(previous=previous, lines=lines, max_tokens=budget)
    text = f"Previous summary:\n{previous or '(none)'}\n\nMessages leaving the context:\n" + "\n".join(lines)
    summary = backend.summarize(instruction=SUMMARY_INSTRUCTION, text=text, max_tokens=budget, fallback=fallback)
    recall = [unit for unit in plan if unit.source == "recall"]
    with transaction.atomic():
        state, _ = AgentContextState.objects.select_for_update().get_or_create(customer=customer)
        state.summary = truncate_to_tokens(summary, budget)
        if recall:
            state.evicted_until_at = recall[-1].created_at
            state.evicted_until_message_id = recall[-1].message_id
            state.evicted_count += len(recall) + compiled.older_not_loaded
        state.save()
    evicted_run_messages = sum(len(unit.messages) for unit in plan if unit.source == "run")
    del run_messages[:evicted_run_messages]
    return len(plan)
