"""The offline model: deterministic, labelled, searches memory and records explicit facts."""

from __future__ import annotations

import json

from memory.models import ArchivalPassage, MemoryBlock
from support_agent.models import AgentRun
from support_agent.offline_model import OfflineBackend, keywords
from support_agent.services import agent_run
from tests.support_agent.helpers import customer_says
from tickets.models import TicketMessage

MESSAGE = (
    "Hi, my name is Dana Whitfield. I prefer email updates. I use the Verifone P400 card reader. "
    "My order number is A-10442. The card reader stopped syncing again."
)


def test_offline_run_records_facts_and_replies_citing_history(actors, blocks, offline):
    message = customer_says(actors.customer, MESSAGE, actors.open_ticket)
    events = []
    run = agent_run(customer=actors.customer, trigger="message", message=message, on_event=events.append)
    run.refresh_from_db()
    assert (run.model_name, run.status, run.stop_reason, run.step_count) == (
        "offline model",
        "completed",
        "end_turn",
        2,
    )
    assert run.reply.startswith("(offline model)")
    assert "card reader stopped syncing" in run.reply  # cites the solved ticket's first message
    assert "I noted:" in run.reply and "Order: A-10442" in run.reply
    reply = TicketMessage.objects.get(pk=run.reply_message_id)
    assert (reply.author_role, reply.author_name, reply.ticket) == ("agent", "offline model", actors.open_ticket)
    values = {b.label: b.value for b in MemoryBlock.objects.filter(customer=actors.customer)}
    assert "Name: Dana Whitfield" in values["customer"]
    assert "Uses the Verifone P400 card reader" in values["customer"]
    assert values["preferences"] == "Prefers email updates"
    assert values["open_issues"].startswith(f"#{actors.open_ticket.pk} Charged twice for March:")
    passage = ArchivalPassage.objects.get(customer=actors.customer, tags=["order"])
    assert passage.text == "Order: A-10442" and passage.source_message_id == message.pk
    labels = [e["label"] for e in events if e["type"] == "step"]
    assert labels[:2] == ["Searching our past conversations", "Searching my notes"]


def test_offline_model_does_not_record_a_fact_twice(actors, blocks, offline):
    agent_run(customer=actors.customer, trigger="message", message=customer_says(actors.customer, MESSAGE))
    before = {b.label: (b.value, b.version) for b in MemoryBlock.objects.filter(customer=actors.customer)}
    run = agent_run(customer=actors.customer, trigger="message", message=customer_says(actors.customer, MESSAGE))
    after = {b.label: (b.value, b.version) for b in MemoryBlock.objects.filter(customer=actors.customer)}
    assert before == after and run.status == AgentRun.Status.COMPLETED
    assert ArchivalPassage.objects.filter(customer=actors.customer, tags=["order"]).count() == 1


def test_offline_model_is_deterministic():
    messages = [{"role": "system", "content": "core"}, {"role": "user", "content": MESSAGE}]
    tools = [
        {"type": "function", "function": {"name": n}}
        for n in ("conversation_search", "archival_memory_search", "core_memory_append", "archival_memory_insert")
    ]
    one = OfflineBackend().complete(messages=messages, tools=tools)
    two = OfflineBackend().complete(messages=messages, tools=tools)
    assert [(c.name, c.arguments) for c in one.tool_calls] == [(c.name, c.arguments) for c in two.tool_calls]
    assert keywords("The card reader stopped syncing again") == ["stopped", "syncing", "reader", "card"]


def test_a_fact_ends_where_the_next_clause_starts():
    text = "I use the Verifone P400 and my order number is A-2291. I work at Whitfield Bakery but not on Sundays."
    messages = [{"role": "system", "content": "core"}, {"role": "user", "content": text}]
    tools = [{"type": "function", "function": {"name": n}} for n in ("core_memory_append", "archival_memory_insert")]
    calls = OfflineBackend().complete(messages=messages, tools=tools).tool_calls
    contents = [json.loads(call.arguments)["content"] for call in calls]
    assert contents == ["Works at Whitfield Bakery", "Uses the Verifone P400", "Order: A-2291"]
