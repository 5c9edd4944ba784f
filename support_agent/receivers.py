"""The agent subscribes to what the tickets layer announces (both signals arrive after commit)."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from support_agent.models import AgentRun
from support_agent.services import agent_run_queue
from support_agent.tasks import agent_run_dispatch
from tickets.models import Ticket, TicketMessage
from tickets.signals import message_ingested, ticket_solved


@receiver(message_ingested, dispatch_uid="support_agent.answer_customer_message")
def answer_customer_message(
    sender: Any, message_id: int, author_role: str, trigger_agent: bool = True, **kwargs: Any
) -> None:
    """A new customer message gets an agent run, unless its caller runs the agent itself. The run is recorded
    first, then queued: if queueing fails, the re-queue sweep starts it later."""
    if author_role != TicketMessage.Role.CUSTOMER or not trigger_agent:
        return
    message = TicketMessage.objects.select_related("customer", "ticket").filter(pk=message_id).first()
    if message is None:
        return
    run = agent_run_queue(customer=message.customer, trigger=AgentRun.Trigger.MESSAGE, message=message)
    agent_run_dispatch(run.pk)


@receiver(ticket_solved, dispatch_uid="support_agent.consolidate_solved_ticket")
def consolidate_solved_ticket(sender: Any, ticket_id: int, **kwargs: Any) -> None:
    """A solved ticket gets a consolidation run: summary archived, core memory brought up to date."""
    ticket = Ticket.objects.select_related("customer").filter(pk=ticket_id).first()
    if ticket is None:
        return
    run = agent_run_queue(customer=ticket.customer, trigger=AgentRun.Trigger.CONSOLIDATION, ticket=ticket)
    agent_run_dispatch(run.pk)
