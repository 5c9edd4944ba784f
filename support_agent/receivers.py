"""The agent subscribes to what the tickets layer announces (both signals arrive after commit)."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from support_agent.models import AgentRun
from support_agent.tasks import agent_run_task
from tickets.models import Ticket, TicketMessage
from tickets.signals import message_ingested, ticket_solved


@receiver(message_ingested, dispatch_uid="support_agent.answer_customer_message")
def answer_customer_message(
    sender: Any, message_id: int, author_role: str, trigger_agent: bool = True, **kwargs: Any
) -> None:
    """A new customer message gets an agent run, unless its caller runs the agent itself."""
    if author_role != TicketMessage.Role.CUSTOMER or not trigger_agent:
        return
    message = TicketMessage.objects.filter(pk=message_id).only("customer_id", "ticket_id").first()
    if message is None:
        return
    agent_run_task.delay(
        message.customer_id, AgentRun.Trigger.MESSAGE, message_id=message.pk, ticket_id=message.ticket_id
    )


@receiver(ticket_solved, dispatch_uid="support_agent.consolidate_solved_ticket")
def consolidate_solved_ticket(sender: Any, ticket_id: int, **kwargs: Any) -> None:
    """A solved ticket gets a consolidation run: summary archived, core memory brought up to date."""
    ticket = Ticket.objects.filter(pk=ticket_id).only("customer_id").first()
    if ticket is None:
        return
    agent_run_task.delay(ticket.customer_id, AgentRun.Trigger.CONSOLIDATION, ticket_id=ticket.pk)
