"""Agent workflows: one run for a customer (``agent_run``), serialised per customer, and the solved-ticket
consolidation that archives a ticket summary and updates core memory."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.db import connection
from django.utils import timezone

from memory.models import ArchivalPassage, ChangeSource
from memory.selectors import passages_for
from memory.services import Provenance, blocks_ensure, passage_insert
from support_agent.agent import Turn, run_loop
from support_agent.context import CONSOLIDATION_INSTRUCTIONS, SYSTEM_INSTRUCTIONS, event_for_message, when_text
from support_agent.llm import Backend, LLMError, backend_configured, backend_get
from support_agent.models import AgentRun
from support_agent.tools import RunContext
from telemetry.logs import log_scope
from telemetry.metrics import AGENT_RUN_SECONDS, AGENT_RUNS
from tickets.models import Customer, Ticket, TicketMessage
from tickets.selectors import ticket_messages

logger = logging.getLogger(__name__)

SUMMARY_TAG = "ticket-summary"
TICKET_SUMMARY_INSTRUCTION = (
    "Summarise this solved support ticket for the support team's long-term memory in 2-4 sentences: the "
    "problem, what was tried, what resolved it, anything to remember about the customer."
)


def _lock_key(customer_id: int) -> str:
    return f"supportmem.agent_run:{customer_id}"


@contextmanager
def customer_lock(customer_id: int) -> Iterator[None]:
    """One run at a time per customer: a PostgreSQL session advisory lock, so a second trigger for the same
    customer waits (queues) until the first run ends, across processes and machines. A session lock rather
    than a transaction-scoped one, because a run makes model calls that can take minutes and must not hold a
    transaction open; the lock dies with the connection if the process does."""
    key = _lock_key(customer_id)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [key])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [key])


def _check_scope(customer: Customer, trigger: str, message: TicketMessage | None, ticket: Ticket | None) -> None:
    if trigger not in AgentRun.Trigger.values:
        raise ValueError(f"Unknown trigger {trigger!r}; one of {', '.join(AgentRun.Trigger.values)}.")
    if message is not None and message.customer_id != customer.pk:
        raise ValueError("The message belongs to another customer.")
    if ticket is not None and ticket.customer_id != customer.pk:
        raise ValueError("The ticket belongs to another customer.")
    if trigger == AgentRun.Trigger.CONSOLIDATION and ticket is None:
        raise ValueError("A consolidation run needs the solved ticket.")


def agent_run(
    *,
    customer: Customer,
    trigger: str,
    message: TicketMessage | None = None,
    ticket: Ticket | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    backend: Backend | None = None,
) -> AgentRun:
    """Run the agent once for a customer and return the recorded run.

    Waits for any other run of the same customer to finish first. The reply (send_message) is stored as an
    agent TicketMessage on the run's ticket and on ``run.reply``/``run.reply_message``. A model that cannot be
    reached fails the run cleanly (status failed, stop reason llm_error); nothing is raised to the caller.
    """
    emit = _listener(on_event)
    backend = backend or backend_get()
    # Picked up at once (this process runs it), so the re-queue sweep never starts it a second time.
    run = _run_record(customer, trigger, message, ticket, model_name=backend.name, picked_at=timezone.now())
    return _run_claimed(run, customer, backend, emit)


def agent_run_queue(
    *, customer: Customer, trigger: str, message: TicketMessage | None = None, ticket: Ticket | None = None
) -> AgentRun:
    """Record a run for a worker to start (``agent_run_start``). The queued row is the promise: if its task
    is lost (broker down, worker gone before it began), ``agent_runs_requeue`` queues it again."""
    return _run_record(customer, trigger, message, ticket)


def _run_record(
    customer: Customer, trigger: str, message: TicketMessage | None, ticket: Ticket | None, **fields: Any
) -> AgentRun:
    _check_scope(customer, trigger, message, ticket)
    ticket = ticket or (message.ticket if message is not None else None)
    return AgentRun.objects.create(
        organization_id=customer.organization_id,
        customer=customer,
        ticket=ticket,
        trigger=trigger,
        audience=run_audience(trigger=trigger, ticket=ticket),
        trigger_message=message,
        **fields,
    )


def run_audience(*, trigger: str, ticket: Ticket | None) -> str:
    """Who reads what a run writes. Staff: a consolidation, and a helpdesk message whose integration posts the
    agent's reply as an internal note (a draft staff review). Everything else reaches the customer (widget,
    API turn, public helpdesk reply, agent_chat) and is the customer's audience: the safe default."""
    if trigger == AgentRun.Trigger.CONSOLIDATION:
        return AgentRun.Audience.STAFF
    integration = ticket.integration if ticket is not None else None
    drafts_a_note = integration is not None and integration.reply_mode == integration.ReplyMode.NOTE
    if trigger == AgentRun.Trigger.MESSAGE and drafts_a_note:
        return AgentRun.Audience.STAFF
    return AgentRun.Audience.CUSTOMER


def agent_run_start(*, run_id: int, backend: Backend | None = None) -> AgentRun | None:
    """Start a queued run. None when another worker has picked it up already (a re-queued duplicate) or it is
    gone: a run is never executed twice, since that would answer the customer twice."""
    related = AgentRun.objects.select_related("customer__organization", "trigger_message", "ticket")
    run = related.filter(pk=run_id).first()
    if run is None:
        return None
    picked = AgentRun.objects.filter(pk=run_id, status=AgentRun.Status.QUEUED, picked_at__isnull=True)
    if not picked.update(picked_at=timezone.now()):
        return None
    backend = backend or backend_get()
    run.model_name = backend.name
    run.save(update_fields=["model_name"])
    return _run_claimed(run, run.customer, backend, _listener(None))


def agent_runs_requeue(*, older_than: timedelta, dispatch: Callable[[int], bool]) -> int:
    """Queue again the runs whose task never started: still queued, never picked up, older than ``older_than``
    (and younger than a day: an answer that late is worse than none). Also runs picked up by a worker that
    died while waiting for the customer's lock. Returns how many were dispatched."""
    now = timezone.now()
    queued = AgentRun.objects.filter(status=AgentRun.Status.QUEUED, created_at__gt=now - REQUEUE_HORIZON)
    stalled = queued.filter(picked_at__lt=now - PICKED_STALE_AFTER)
    stalled.update(picked_at=None)  # its worker is gone: let a new task pick it up
    lost = queued.filter(picked_at__isnull=True, created_at__lt=now - older_than).order_by("created_at")
    return sum(dispatch(run_id) for run_id in lost.values_list("pk", flat=True)[:REQUEUE_BATCH])


# Whether the session that took a customer's lock (pid) still holds it. The advisory lock's 64-bit key is
# shown by pg_locks as two 32-bit halves (classid high, objid low), with objsubid 1.
_LOCK_HELD_SQL = """
    SELECT EXISTS (
        SELECT 1 FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND pid = %(pid)s
          AND classid::bigint = (hashtextextended(%(key)s, 0) >> 32) & 4294967295
          AND objid::bigint = hashtextextended(%(key)s, 0) & 4294967295
    )
"""


def agent_runs_sweep(*, lease: timedelta) -> int:
    """Fail the runs left ``running`` by a process that is gone, so that they stop showing as in progress and
    nothing waits on them. Returns how many were failed.

    A running run records the database session that holds its customer's lock (``backend_pid``) and beats on
    every step (``heartbeat_at``). Two ways to know its process is gone:
    - its session no longer holds the lock: the process died (killed, OOM, redeployed) and PostgreSQL closed
      its connection, which released the lock; exact, whatever the run's age;
    - it holds the lock but has not beaten for longer than ``lease``: the process hangs, or its machine
      vanished and PostgreSQL has not noticed yet. Its session is terminated, which releases the lock, so
      the customer's next message is answered.
    """
    failed = 0
    for run in AgentRun.objects.filter(status=AgentRun.Status.RUNNING).only("pk", "customer_id", "backend_pid"):
        with connection.cursor() as cursor:
            cursor.execute(_LOCK_HELD_SQL, {"pid": run.backend_pid or 0, "key": _lock_key(run.customer_id)})
            held = cursor.fetchone()[0]
            silent = AgentRun.objects.filter(pk=run.pk, heartbeat_at__lt=timezone.now() - lease).exists()
            if held and not silent:
                continue
            if held:
                cursor.execute("SELECT pg_terminate_backend(%s)", [run.backend_pid])
        reason = "no heartbeat within the lease; its session was ended" if held else "its process stopped"
        failed += AgentRun.objects.filter(pk=run.pk, status=AgentRun.Status.RUNNING).update(
            status=AgentRun.Status.FAILED,
            stop_reason=AgentRun.StopReason.WORKER_LOST,
            error=f"Swept: {reason} before the run finished.",
            finished_at=timezone.now(),
        )
        logger.warning("agent run %s swept: %s", run.pk, reason)
    return failed


REQUEUE_HORIZON = timedelta(days=1)
REQUEUE_BATCH = 500
# A picked-up run waits for the customer's lock at most as long as the run ahead of it takes.
PICKED_STALE_AFTER = timedelta(hours=1)


def _run_claimed(
    run: AgentRun, customer: Customer, backend: Backend, emit: Callable[[dict[str, Any]], None]
) -> AgentRun:
    with (
        customer_lock(customer.pk),
        log_scope(organization=customer.organization_id, customer=customer.pk, run_id=run.pk),
    ):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            run.backend_pid = cursor.fetchone()[0]
        run.status, run.started_at = AgentRun.Status.RUNNING, timezone.now()
        run.heartbeat_at = run.started_at
        run.save(update_fields=["status", "started_at", "backend_pid", "heartbeat_at"])
        emit({"type": "run_started", "run_id": run.pk})
        logger.info("agent run %s started (%s)", run.pk, run.trigger)
        _run_guarded(run, customer, backend, emit)
        elapsed = (run.finished_at - run.started_at).total_seconds() if run.finished_at else 0.0
        AGENT_RUNS.labels(run.trigger, run.status, run.stop_reason).inc()
        AGENT_RUN_SECONDS.labels(run.trigger).observe(elapsed)
        logger.info("agent run %s %s (%s) in %.2fs", run.pk, run.status, run.stop_reason, elapsed)
    emit({"type": "run_finished", "run_id": run.pk, "status": run.status, "stop_reason": run.stop_reason})
    return run


def _listener(on_event: Callable[[dict[str, Any]], None] | None) -> Callable[[dict[str, Any]], None]:
    """Progress events for the caller (the widget's stream). A listener that fails, e.g. a browser that went
    away, must not fail the run: the reply is still stored and delivered."""

    def emit(event: dict[str, Any]) -> None:
        if on_event is None:
            return
        try:
            on_event(event)
        except Exception:
            logger.warning("agent event listener failed on %s", event.get("type"), exc_info=True)

    return emit


def _run_guarded(run: AgentRun, customer: Customer, backend: Backend, emit: Callable[[dict[str, Any]], None]) -> None:
    try:
        run.stop_reason = _run_body(run, customer, backend, emit)
        run.status = AgentRun.Status.COMPLETED
    except LLMError as exc:
        run.status, run.stop_reason, run.error = AgentRun.Status.FAILED, AgentRun.StopReason.LLM_ERROR, str(exc)
    except Exception as exc:
        # Recorded, not raised: a run is a background job whose trace is its report.
        logger.exception("agent run %s failed", run.pk)
        run.status, run.stop_reason, run.error = AgentRun.Status.FAILED, AgentRun.StopReason.ERROR, repr(exc)
    run.finished_at = timezone.now()
    # update_fields: the step counters were incremented in the database by the loop; read them back.
    run.save(update_fields=["status", "stop_reason", "error", "finished_at", "reply", "reply_message"])
    run.refresh_from_db(fields=["step_count", "prompt_tokens", "completion_tokens"])


def _run_body(run: AgentRun, customer: Customer, backend: Backend, emit: Callable[[dict[str, Any]], None]) -> str:
    blocks_ensure(customer=customer)

    def on_reply(message: TicketMessage) -> None:
        run.reply = f"{run.reply}\n\n{message.body}" if run.reply else message.body
        run.reply_message = message
        run.save(update_fields=["reply", "reply_message"])
        emit({"type": "reply", "text": message.body})

    consolidation = run.trigger == AgentRun.Trigger.CONSOLIDATION
    ctx = RunContext(customer=customer, run=run, allow_reply=not consolidation, on_reply=on_reply)
    # History stops at the triggering message: later messages have runs of their own, which queue behind this.
    until = run.trigger_message.created_at if run.trigger_message is not None else run.started_at
    turn = Turn(backend=backend, until=until, new_event_message=run.trigger_message)
    if consolidation:
        assert run.ticket is not None  # checked by _check_scope
        passage = ticket_summary_archive(ticket=run.ticket, run=run, backend=backend)
        turn.new_event = consolidation_event(ticket=run.ticket, summary=passage.text)
        turn.instructions = f"{SYSTEM_INSTRUCTIONS}\n\n{CONSOLIDATION_INSTRUCTIONS}"
    elif run.trigger_message is not None:
        turn.new_event = event_for_message(run.trigger_message)
    return run_loop(ctx=ctx, turn=turn, emit=emit)


def consolidation_event(*, ticket: Ticket, summary: str) -> str:
    """The new event of a consolidation run. The first line's format is stable: the offline model parses it."""
    return (
        f'Ticket #{ticket.pk} "{ticket.subject}" was solved ({when_text(ticket.solved_at or timezone.now())}).\n'
        f"Its summary is now in archival memory (tag {SUMMARY_TAG}):\n{summary}"
    )


def ticket_summary_text(*, ticket: Ticket) -> str:
    """A deterministic summary of a ticket from its public messages: what the customer reported, what resolved
    it. Internal notes stay out: the summary is an ordinary passage every later run of the customer reads."""
    messages = list(ticket_messages(ticket=ticket, include_internal=False))
    reported = next((m.body for m in messages if m.author_role == TicketMessage.Role.CUSTOMER), "")
    # What support staff said resolves a ticket; the agent's replies count only on a ticket staff never answered.
    answers = [m.body for m in messages if m.author_role == TicketMessage.Role.STAFF] or [
        m.body for m in messages if m.author_role == TicketMessage.Role.AGENT
    ]
    opened = when_text(ticket.created_at)[:10]
    closed = when_text(ticket.solved_at)[:10] if ticket.solved_at else "unknown date"
    text = f'Ticket #{ticket.pk} "{ticket.subject}" ({ticket.status}, opened {opened}, solved {closed}).'
    if reported:
        text += f" Customer reported: {' '.join(reported.split())[:300]}"
    if answers:
        text += f" Resolution: {' '.join(answers[-1].split())[:300]}"
    return text


def ticket_summary_archive(*, ticket: Ticket, run: AgentRun, backend: Backend) -> ArchivalPassage:
    """Archive one summary per solved ticket (tags ticket-summary and ticket-<id>); a second call returns the
    first summary. The model writes it when there is one; the deterministic summary is the fallback."""
    ticket_tag = f"ticket-{ticket.pk}"
    existing = passages_for(organization=ticket.organization, customer=ticket.customer).filter(
        tags__contains=[SUMMARY_TAG, ticket_tag]
    )
    if (found := existing.first()) is not None:
        return found
    fallback = ticket_summary_text(ticket=ticket)
    public = ticket_messages(ticket=ticket, include_internal=False)
    transcript = "\n".join(f"{m.author_role}: {m.body}" for m in public)
    summary = backend.summarize(
        instruction=TICKET_SUMMARY_INSTRUCTION,
        text=f'Ticket #{ticket.pk} "{ticket.subject}"\n{transcript}',
        max_tokens=200,
        fallback=fallback,
    )
    passage, _ = passage_insert(
        organization=ticket.organization,
        customer=ticket.customer,
        text=summary,
        tags=[SUMMARY_TAG, ticket_tag],
        provenance=Provenance(source=ChangeSource.AGENT, agent_run_id=run.pk, reason="solved-ticket summary"),
    )
    return passage


# ---------------------------------------------------------------- imported history


def consolidation_backlog_run(*, customer: Customer, ticket_ids: list[int], backend: Backend | None = None) -> int:
    """Consolidate a customer's imported solved tickets in the order given (oldest first, so the newest facts win),
    skipping any ticket that has a completed consolidation already (a resumed import, or one solved live).
    Returns how many runs it made. A run that failed before is run again."""
    done = set(
        AgentRun.objects.filter(
            ticket_id__in=ticket_ids, trigger=AgentRun.Trigger.CONSOLIDATION, status=AgentRun.Status.COMPLETED
        ).values_list("ticket_id", flat=True)
    )
    tickets = {t.pk: t for t in Ticket.objects.filter(pk__in=ticket_ids, customer=customer)}
    backend = backend or backend_get()
    runs = 0
    for ticket_id in ticket_ids:
        ticket = tickets.get(ticket_id)
        if ticket is None or ticket_id in done:
            continue
        agent_run(customer=customer, trigger=AgentRun.Trigger.CONSOLIDATION, ticket=ticket, backend=backend)
        runs += 1
    return runs


# Consolidation runs of the offline model take two steps (a memory edit, then the end of the turn); a
# configured model is assumed to do the same. Core memory and statistics in the prompt of a new customer.
CONSOLIDATION_STEPS = 2
CORE_MEMORY_TOKENS = 350
STEP_COMPLETION_TOKENS = 80
SUMMARY_COMPLETION_TOKENS = 150


def consolidation_cost_estimate(*, tickets: list[dict[str, str]]) -> dict[str, Any]:
    """What consolidating these tickets would cost, before anything is spent: the summary call (instruction and
    transcript) plus CONSOLIDATION_STEPS loop steps (instructions, tools, core memory, the summary event)."""
    from support_agent.tokens import count_tokens, count_tools_tokens
    from support_agent.tools import tool_schemas

    fixed = (
        count_tokens(f"{SYSTEM_INSTRUCTIONS}\n\n{CONSOLIDATION_INSTRUCTIONS}")
        + count_tools_tokens(tool_schemas(allow_reply=False))
        + CORE_MEMORY_TOKENS
    )
    instruction = count_tokens(TICKET_SUMMARY_INSTRUCTION)
    prompt = 0
    for ticket in tickets:
        transcript = count_tokens(f"{ticket['subject']}\n{ticket['transcript']}")
        event = SUMMARY_COMPLETION_TOKENS + 40
        prompt += instruction + transcript + CONSOLIDATION_STEPS * (fixed + event) + STEP_COMPLETION_TOKENS
    completion = len(tickets) * (SUMMARY_COMPLETION_TOKENS + CONSOLIDATION_STEPS * STEP_COMPLETION_TOKENS)
    backend = backend_get()
    return {
        "runs": len(tickets),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "model": backend.name,
        "offline": backend_configured() == "offline",
    }
