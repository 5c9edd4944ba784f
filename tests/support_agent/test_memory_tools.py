"""Memory tools through the loop: pinned blocks, the approval queue, soft limits, customer scoping."""

from __future__ import annotations

import json

from memory.models import ArchivalPassage, ChangeSource, MemoryBlock, PendingMemoryEdit
from memory.services import Provenance, block_set_pinned, block_set_value, passage_insert
from support_agent.models import AgentRun
from support_agent.services import agent_run
from support_agent.tools import RunContext, tool_execute, tool_schemas
from tests.support_agent.fake_openai import tool_calls
from tests.support_agent.helpers import customer_says, tool_results
from tickets.services import message_ingest


def _append(label: str, content: str) -> dict:
    return tool_calls(("core_memory_append", {"label": label, "content": content, "request_heartbeat": False}))


def _done() -> dict:
    return tool_calls(("send_message", {"message": "Done.", "request_heartbeat": False}))


def test_pinned_block_edit_is_refused(actors, blocks, fake_llm):
    block_set_pinned(
        block=blocks["preferences"], pinned=True, provenance=Provenance(source=ChangeSource.STAFF, user=actors.staff)
    )
    fake_llm.script = [_append("preferences", "Prefers SMS."), _done()]
    agent_run(customer=actors.customer, trigger="manual", message=customer_says(actors.customer, "Text me."))
    refusal = tool_results(fake_llm.tool_requests()[1])[0]
    assert refusal["ok"] is False and "pinned (read-only)" in refusal["error"]
    assert MemoryBlock.objects.get(pk=blocks["preferences"].pk).value == ""
    assert "read-only" in fake_llm.tool_requests()[0]["messages"][0]["content"]


def test_approval_setting_routes_the_edit_to_the_queue(actors, blocks, fake_llm):
    actors.org.memory_edits_need_approval = True
    actors.org.save()
    message = customer_says(actors.customer, "Please call me Dee.")
    fake_llm.script = [_append("customer", "Goes by Dee."), _done()]
    run = agent_run(customer=actors.customer, trigger="message", message=message)
    assert run.step_count == 1  # a queued edit is a success: no heartbeat asked, so the turn ends
    result = json.loads(run.steps.get().tool_results[0]["content"])
    assert result["ok"] is True and result["result"]["applied"] is False
    assert "awaits staff review" in result["result"]["note"]
    pending = PendingMemoryEdit.objects.get()
    assert (pending.status, pending.new_content, pending.block_id) == ("pending", "Goes by Dee.", blocks["customer"].pk)
    assert (pending.agent_run_id, pending.agent_step_id, pending.prompting_message_id) == (
        run.pk,
        run.steps.get(index=0).pk,
        message.pk,
    )
    assert MemoryBlock.objects.get(pk=blocks["customer"].pk).value == ""


def test_organisation_blocks_are_not_the_agents_to_edit(actors, blocks, fake_llm):
    fake_llm.script = [_append("policies", "Refunds always."), _done()]
    agent_run(customer=actors.customer, trigger="manual", message=customer_says(actors.customer, "Refund!"))
    assert "only staff" in tool_results(fake_llm.tool_requests()[1])[0]["error"]


def test_over_limit_block_is_accepted_but_flagged(actors, blocks, fake_llm):
    block_set_value(block=blocks["preferences"], value="x" * 1490, provenance=Provenance())
    fake_llm.script = [_append("preferences", "Prefers long, detailed answers."), _done()]
    agent_run(customer=actors.customer, trigger="manual", message=customer_says(actors.customer, "Details!"))
    result = tool_results(fake_llm.tool_requests()[1])[0]
    assert result["result"]["applied"] is True and "over its limit" in result["result"]["warnings"][0]
    assert "OVER LIMIT" in fake_llm.tool_requests()[1]["messages"][0]["content"]


def _context(actors) -> RunContext:
    run = AgentRun.objects.create(organization=actors.org, customer=actors.customer, trigger="manual")
    return RunContext(customer=actors.customer, run=run)


def test_tools_cannot_reach_another_customer(actors, blocks):
    lee_message, _ = message_ingest(
        customer=actors.other_customer, body="Lee's secret invoice question", author_role="customer", announce=False
    )
    ctx = _context(actors)
    search = tool_execute(call_id="1", name="conversation_search", raw_arguments='{"query": "secret invoice"}', ctx=ctx)
    rows = json.loads(search.content)["result"]["results"]
    assert search.ok and lee_message.pk not in {row["message_id"] for row in rows}
    assert "secret" not in search.content
    lee_ticket = actors.other_customer.tickets.create(
        organization=actors.org,
        subject="Lee's",
        created_at=actors.open_ticket.created_at,
        updated_at=actors.open_ticket.updated_at,
    )
    other = tool_execute(call_id="2", name="get_ticket", raw_arguments=f'{{"ticket_id": {lee_ticket.pk}}}', ctx=ctx)
    assert not other.ok and "no ticket" in other.content
    assert not tool_execute(
        call_id="3", name="conversation_search", raw_arguments='{"query": "x", "customer_id": 2}', ctx=ctx
    ).ok


def test_archival_insert_and_search_with_provenance(actors, blocks):
    ctx = _context(actors)
    stored = tool_execute(
        call_id="1",
        name="archival_memory_insert",
        raw_arguments='{"content": "Order A-10442 was refunded", "tags": ["Billing"]}',
        ctx=ctx,
    )
    assert stored.ok
    passage = ArchivalPassage.objects.get(customer=actors.customer)
    assert (passage.tags, passage.change_source, passage.agent_run_id) == (["billing"], "agent", ctx.run.pk)
    found = tool_execute(
        call_id="2",
        name="archival_memory_search",
        raw_arguments='{"query": "refunded", "tags": ["billing"], "start": "2020-01-01"}',
        ctx=ctx,
    )
    assert found.ok and "A-10442" in found.content
    bad_date = tool_execute(
        call_id="3", name="archival_memory_search", raw_arguments='{"query": "x", "start": "last tuesday"}', ctx=ctx
    )
    assert not bad_date.ok and "ISO date" in bad_date.content


def test_archival_supersede_replaces_a_fact_and_keeps_the_old_one_for_staff(actors, blocks):
    ctx = _context(actors)
    old, _ = passage_insert(
        organization=actors.org,
        customer=actors.customer,
        text="Order: A-10442",
        tags=["order"],
        provenance=Provenance(),
    )
    arguments = json.dumps({"passage_id": old.pk, "content": "Order: A-10999"})
    outcome = tool_execute(call_id="1", name="archival_memory_supersede", raw_arguments=arguments, ctx=ctx)
    assert outcome.ok, outcome.content
    old.refresh_from_db()
    new = ArchivalPassage.objects.get(pk=json.loads(outcome.content)["result"]["passage_id"])
    assert old.invalidated_at is not None and old.superseded_by_id == new.pk
    assert (new.text, new.tags, new.change_source, new.agent_run_id) == (
        "Order: A-10999",
        ["order"],
        "agent",
        ctx.run.pk,
    )
    found = tool_execute(call_id="2", name="archival_memory_search", raw_arguments='{"query": "order"}', ctx=ctx)
    assert "A-10999" in found.content and "A-10442" not in found.content
    again = tool_execute(call_id="3", name="archival_memory_supersede", raw_arguments=arguments, ctx=ctx)
    assert not again.ok and "No current passage" in again.content


def test_archival_supersede_cannot_reach_another_customer_or_the_organisation(actors, blocks):
    ctx = _context(actors)
    lees, _ = passage_insert(
        organization=actors.org, customer=actors.other_customer, text="Lee's order", provenance=Provenance()
    )
    shared, _ = passage_insert(organization=actors.org, customer=None, text="Refund policy", provenance=Provenance())
    for passage in (lees, shared):
        arguments = json.dumps({"passage_id": passage.pk, "content": "changed"})
        outcome = tool_execute(call_id="1", name="archival_memory_supersede", raw_arguments=arguments, ctx=ctx)
        assert not outcome.ok and "No current passage" in outcome.content
        passage.refresh_from_db()
        assert passage.invalidated_at is None
    mine, _ = passage_insert(
        organization=actors.org, customer=actors.customer, text="Plan: Pro", provenance=Provenance()
    )
    same = json.dumps({"passage_id": mine.pk, "content": "plan: pro"})
    outcome = tool_execute(call_id="2", name="archival_memory_supersede", raw_arguments=same, ctx=ctx)
    assert not outcome.ok and "same" in outcome.content
    mine.refresh_from_db()
    assert mine.invalidated_at is None


def test_every_tool_declares_request_heartbeat_and_no_customer():
    schemas = tool_schemas()
    assert {s["function"]["name"] for s in schemas} == {
        "send_message",
        "core_memory_append",
        "core_memory_replace",
        "archival_memory_insert",
        "archival_memory_supersede",
        "archival_memory_search",
        "conversation_search",
        "list_tickets",
        "get_ticket",
        "search_tickets",
    }
    for schema in schemas:
        properties = schema["function"]["parameters"]["properties"]
        assert "request_heartbeat" in properties
        assert not any("customer" in name for name in properties)
        assert schema["function"]["description"]
    assert "send_message" not in {s["function"]["name"] for s in tool_schemas(allow_reply=False)}
