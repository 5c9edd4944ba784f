"""Signals: a customer message starts a run; a solved ticket starts a consolidation run (offline model)."""

from __future__ import annotations

from memory.models import ArchivalPassage, MemoryBlock
from memory.services import Provenance, block_set_value
from support_agent.models import AgentRun
from support_agent.services import agent_run
from tickets.models import TicketMessage
from tickets.services import TicketChanges, message_ingest, ticket_upsert


def _solve(ticket):
    return ticket_upsert(
        organization=ticket.organization,
        customer=ticket.customer,
        integration_id=None,
        external_id=ticket.external_id,
        changes=TicketChanges(status="solved"),
    )


def test_solved_ticket_is_consolidated_once(actors, blocks, offline, django_capture_on_commit_callbacks):
    ticket = actors.open_ticket
    block_set_value(
        block=blocks["open_issues"],
        provenance=Provenance(),
        value=f"#{ticket.pk} Charged twice for March: refund pending\n#999 Printer jams",
    )
    message_ingest(
        customer=actors.customer,
        ticket=ticket,
        author_role="staff",
        announce=False,
        body="We refunded the duplicate 89 USD charge.",
    )
    with django_capture_on_commit_callbacks(execute=True):
        _solve(ticket)
    run = AgentRun.objects.get(trigger="consolidation")
    assert (run.status, run.stop_reason, run.ticket_id, run.reply) == ("completed", "end_turn", ticket.pk, "")
    summary = ArchivalPassage.objects.get(customer=actors.customer, tags__contains=["ticket-summary"])
    assert summary.tags == [f"ticket-{ticket.pk}", "ticket-summary"]
    assert "Charged twice for March" in summary.text and "refunded the duplicate" in summary.text
    assert summary.agent_run_id == run.pk
    assert MemoryBlock.objects.get(pk=blocks["open_issues"].pk).value == "#999 Printer jams"
    assert not TicketMessage.objects.filter(author_role="agent").exists()

    again = agent_run(customer=actors.customer, trigger="consolidation", ticket=ticket)
    assert again.status == "completed"
    assert ArchivalPassage.objects.filter(tags__contains=["ticket-summary"]).count() == 1


def test_customer_message_signal_starts_a_run(actors, blocks, offline, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        message, _ = message_ingest(
            customer=actors.customer, ticket=actors.open_ticket, author_role="customer", body="Any news on the refund?"
        )
    run = AgentRun.objects.get()
    assert (run.trigger, run.trigger_message_id, run.status) == ("message", message.pk, "completed")
    assert run.reply.startswith("(offline model)")


def test_no_run_for_agent_messages_or_when_the_caller_runs_it(actors, offline, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        message_ingest(customer=actors.customer, author_role="customer", body="Widget chat", trigger_agent=False)
        message_ingest(customer=actors.customer, author_role="agent", body="An agent reply")
        message_ingest(customer=actors.customer, author_role="staff", body="A staff note")
    assert not AgentRun.objects.exists()


def test_bad_calls_to_the_service_are_refused_before_anything_is_written(actors):
    import pytest

    with pytest.raises(ValueError, match="another customer"):
        agent_run(customer=actors.other_customer, trigger="message", ticket=actors.open_ticket)
    with pytest.raises(ValueError, match="Unknown trigger"):
        agent_run(customer=actors.customer, trigger="telepathy")
    with pytest.raises(ValueError, match="needs the solved ticket"):
        agent_run(customer=actors.customer, trigger="consolidation")
    assert not AgentRun.objects.exists()
