"""Context compilation, memory pressure, and eviction into the recursive summary (nothing is lost)."""

from __future__ import annotations

import json
import socket
from datetime import timedelta

import pytest
import tiktoken
from django.utils import timezone

from memory.models import ChangeSource
from memory.services import Provenance, block_set_value
from support_agent import tokens
from support_agent.context import compile_context, eviction_plan
from support_agent.models import AgentContextState, AgentRun
from support_agent.services import agent_run
from support_agent.tools import RunContext, tool_execute, tool_schemas
from tests.support_agent.fake_openai import tool_calls
from tests.support_agent.helpers import customer_says
from tickets.models import TicketMessage
from tickets.services import message_ingest

SECTIONS = {"system", "core_memory", "memory_stats", "summary", "messages", "new_event"}


def _history(customer, count: int) -> list[TicketMessage]:
    start = timezone.now() - timedelta(days=30)
    return [
        message_ingest(
            customer=customer,
            author_role="customer" if n % 2 == 0 else "staff",
            announce=False,
            body=f"Note zq{n}x about the espresso machine order, serial block {n * 7919} and its warranty.",
            created_at=start + timedelta(minutes=n),
        )[0]
        for n in range(count)
    ]


def test_compiled_context_order_sections_and_purity(actors, blocks):
    compiled = compile_context(customer=actors.customer, new_event="The customer asks about refunds.")
    assert set(compiled.tokens_by_section) == SECTIONS
    assert compiled.tokens_total == sum(compiled.tokens_by_section.values())
    system = compiled.messages[0]["content"]
    assert compiled.messages[0]["role"] == "system"
    order = [system.index(mark) for mark in ("send_message", "### Core memory", "### Memory statistics")]
    assert order == sorted(order)
    assert '<preferences chars="0/1500">' in system and "3 in all" in system
    assert compiled.messages[-1] == {"role": "user", "content": "The customer asks about refunds."}
    assert [m["role"] for m in compiled.messages[1:-1]] == ["user", "system", "user"]  # history, oldest first
    assert compiled.context_window == 16000 and not compiled.memory_pressure
    assert not AgentContextState.objects.exists()


def test_staff_correction_shows_at_the_next_compile(actors, blocks):
    block_set_value(block=blocks["customer"], value="Plan: Starter", provenance=Provenance())
    assert "Plan: Starter" in compile_context(customer=actors.customer).messages[0]["content"]
    staff = Provenance(source=ChangeSource.STAFF, user=actors.staff, reason="correction")
    block_set_value(block=blocks["customer"], value="Plan: Business", provenance=staff)
    system = compile_context(customer=actors.customer).messages[0]["content"]
    assert "Plan: Business" in system and "Plan: Starter" not in system


def test_memory_pressure_warning_past_75_percent(actors, blocks):
    baseline = compile_context(customer=actors.customer).tokens_total
    actors.org.context_window_tokens = int(baseline / 0.8)
    actors.org.save()
    compiled = compile_context(customer=actors.customer)
    assert compiled.memory_pressure and not compiled.overflow
    assert "### Memory pressure" in compiled.messages[0]["content"]
    assert "Save what matters now" in compiled.messages[0]["content"]


def test_overflow_is_summarised_and_evicted_messages_stay_searchable(actors, blocks, fake_llm):
    baseline = compile_context(customer=actors.customer, tools=tool_schemas()).tokens_total
    actors.org.context_window_tokens = baseline * 2
    actors.org.save()
    history = _history(actors.customer, 120)
    assert compile_context(customer=actors.customer, tools=tool_schemas()).overflow
    fake_llm.script = [tool_calls(("send_message", {"message": "Noted.", "request_heartbeat": False}))]
    run = agent_run(
        customer=actors.customer,
        trigger="message",
        message=customer_says(actors.customer, "What about my espresso order?"),
    )

    state = AgentContextState.objects.get(customer=actors.customer)
    assert state.summary.startswith("Summary 1") and len(fake_llm.summary_requests) == 1
    evicted = [m for m in history if (m.created_at, m.pk) <= (state.evicted_until_at, state.evicted_until_message_id)]
    kept = [m for m in history if m not in evicted]
    assert evicted and kept and state.evicted_count >= len(evicted)
    sent = json.dumps(fake_llm.tool_requests()[0]["messages"])
    assert state.summary in sent and kept[-1].body in sent
    assert not any(m.body in sent for m in evicted)
    assert run.steps.get().context_tokens < actors.org.context_window_tokens
    # Nothing is lost: every evicted message is still found in recall memory.
    ctx = RunContext(customer=actors.customer, run=run)
    for message in evicted:
        result = tool_execute(
            call_id="s",
            name="conversation_search",
            raw_arguments=json.dumps({"query": f"zq{history.index(message)}x"}),
            ctx=ctx,
        )
        assert message.pk in {row["message_id"] for row in json.loads(result.content)["result"]["results"]}


def test_eviction_never_splits_a_tool_call_from_its_results(actors, blocks):
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": f"c{i}", "type": "function", "function": {"name": "list_tickets", "arguments": "{}"}} for i in (1, 2)
        ],
    }
    results = [{"role": "tool", "tool_call_id": f"c{i}", "content": "x" * 400} for i in (1, 2)]
    later = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c3", "type": "function", "function": {"name": "list_tickets", "arguments": "{}"}}],
    }
    compiled = compile_context(
        customer=actors.other_customer,
        run_messages=[call, *results, later, {"role": "tool", "tool_call_id": "c3", "content": "y"}],
    )
    plan = eviction_plan(compiled, target_tokens=0)
    assert [len(unit.messages) for unit in plan] == [3]
    assert [m.get("tool_call_id") for m in plan[0].messages] == [None, "c1", "c2"]


def test_token_counting_needs_no_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network is cut in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    tokens._encoding.cache_clear()
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    assert tokens.count_tokens("hello world") == 2
    assert tokens.count_message_tokens({"role": "user", "content": "hello world"}) == 6


def test_a_run_without_overflow_writes_no_summary(actors, blocks, fake_llm):
    fake_llm.script = [tool_calls(("send_message", {"message": "Hi!", "request_heartbeat": False}))]
    run = agent_run(customer=actors.customer, trigger="manual", message=customer_says(actors.customer, "Hi"))
    assert run.status == AgentRun.Status.COMPLETED
    assert not AgentContextState.objects.exists() and not fake_llm.summary_requests


@pytest.mark.parametrize("count", [0, 1])
def test_compile_for_a_customer_without_history(actors, count):
    _history(actors.other_customer, count)
    compiled = compile_context(customer=actors.other_customer)
    assert len(compiled.messages) == 1 + count and compiled.older_not_loaded == 0


def test_recent_messages_stay_within_the_organisations_budget(actors, blocks, fake_llm):
    _history(actors.customer, 200)
    actors.org.recent_messages_tokens = 800
    actors.org.save()
    compiled = compile_context(customer=actors.customer, tools=tool_schemas())
    assert compiled.recent_budget == 800 and compiled.overflow  # over the budget, far under the window
    assert compiled.tokens_total < compiled.context_window / 2
    fake_llm.script = [tool_calls(("send_message", {"message": "Noted.", "request_heartbeat": False}))]
    agent_run(customer=actors.customer, trigger="message", message=customer_says(actors.customer, "Any news?"))
    after = compile_context(customer=actors.customer, tools=tool_schemas())
    assert after.recent_tokens <= 800 and not after.overflow  # the oldest went to the summary, still searchable
    assert AgentContextState.objects.get(customer=actors.customer).evicted_count > 0
    assert after.tokens_by_section["messages"] <= 800 + after.tokens_by_section["new_event"] + 200
