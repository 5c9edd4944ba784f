"""The agent subscribes to what the tickets layer announces (both signals arrive after commit)."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from support_agent.models import AgentRun
from support_agent.services import agent_run_queue, consolidation_backlog_run, consolidation_cost_estimate
from support_agent.tasks import agent_run_dispatch
from tickets.models import Customer, Ticket, TicketMessage
from tickets.signals import consolidation_estimate, imported_tickets_consolidate, message_ingested, ticket_solved


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


@receiver(imported_tickets_consolidate, dispatch_uid="support_agent.consolidate_imported_tickets")
def consolidate_imported_tickets(sender: Any, customer_id: int, ticket_ids: list[int], **kwargs: Any) -> int:
    """A history import's solved tickets of one customer, consolidated now, in the import's process."""
    customer = Customer.objects.select_related("organization").filter(pk=customer_id).first()
    if customer is None:
        return 0
    return consolidation_backlog_run(customer=customer, ticket_ids=ticket_ids)


@receiver(consolidation_estimate, dispatch_uid="support_agent.estimate_consolidation")
def estimate_consolidation(sender: Any, tickets: list[dict[str, str]], **kwargs: Any) -> dict[str, Any]:
    return consolidation_cost_estimate(tickets=tickets)
