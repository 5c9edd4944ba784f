"""Celery tasks of the agent. Thin: load rows by primary key, call one service."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import OperationalError

from support_agent.services import agent_run, agent_run_start, agent_runs_requeue, agent_runs_sweep
from tickets.models import Customer, Ticket, TicketMessage

logger = logging.getLogger(__name__)


# Only a lost database connection is retried: a failing model is already recorded on the run (llm_error),
# and running the agent again would answer the customer twice.
@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3)
def agent_run_task(
    customer_id: int, trigger: str, message_id: int | None = None, ticket_id: int | None = None
) -> int | None:
    """Run the agent for a customer; returns the AgentRun id (None when the customer no longer exists).

    Kept for tasks queued before runs were recorded first; new work goes through ``agent_run_queued_task``.
    """
    customer = Customer.objects.select_related("organization").filter(pk=customer_id).first()
    if customer is None:
        return None
    message = TicketMessage.objects.filter(pk=message_id, customer=customer).first() if message_id else None
    ticket = Ticket.objects.filter(pk=ticket_id, customer=customer).first() if ticket_id else None
    if ticket_id and ticket is None:
        return None
    return agent_run(customer=customer, trigger=trigger, message=message, ticket=ticket).pk


@shared_task(name="support_agent.run_queued", autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3)
def agent_run_queued_task(run_id: int) -> int | None:
    """Start a run recorded by ``agent_run_queue``; None when another task already took it."""
    run = agent_run_start(run_id=run_id)
    return run.pk if run is not None else None


@shared_task(name="support_agent.requeue_runs", ignore_result=True)
def agent_runs_requeue_task() -> int:
    """Beat: runs left running by a dead process are failed; queued runs whose task was lost are dispatched again."""
    agent_runs_sweep(lease=timedelta(seconds=settings.SUPPORTMEM_AGENT_RUN_LEASE_SECONDS))
    return agent_runs_requeue(
        older_than=timedelta(seconds=settings.SUPPORTMEM_AGENT_REQUEUE_SECONDS), dispatch=agent_run_dispatch
    )


def agent_run_dispatch(run_id: int) -> bool:
    """Queue a recorded run; never fail the caller. A run that cannot be queued stays queued for the sweep."""
    try:
        agent_run_queued_task.apply_async(args=[run_id], retry=False)
    except Exception as exc:  # kombu and redis raise several types; all mean "not queued"
        logger.warning("could not queue agent run %s (%s); the re-queue sweep will", run_id, exc)
        return False
    return True
