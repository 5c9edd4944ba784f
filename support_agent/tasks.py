"""Celery tasks of the agent. Thin: load rows by primary key, call one service."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from support_agent.services import agent_run
from tickets.models import Customer, Ticket, TicketMessage


# Only a lost database connection is retried: a failing model is already recorded on the run (llm_error),
# and running the agent again would answer the customer twice.
@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3)
def agent_run_task(
    customer_id: int, trigger: str, message_id: int | None = None, ticket_id: int | None = None
) -> int | None:
    """Run the agent for a customer; returns the AgentRun id (None when the customer no longer exists)."""
    customer = Customer.objects.select_related("organization").filter(pk=customer_id).first()
    if customer is None:
        return None
    message = TicketMessage.objects.filter(pk=message_id, customer=customer).first() if message_id else None
    ticket = Ticket.objects.filter(pk=ticket_id, customer=customer).first() if ticket_id else None
    if ticket_id and ticket is None:
        return None
    return agent_run(customer=customer, trigger=trigger, message=message, ticket=ticket).pk
