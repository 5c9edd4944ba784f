"""The benchmark command runs end to end on a small history and cleans up after itself."""

from __future__ import annotations

from io import StringIO

from django.core.management import call_command

from support_agent.models import AgentRun
from tickets.models import Organization


def test_agent_benchmark_prints_percentiles_and_cleans_up(db):
    out = StringIO()
    call_command("agent_benchmark", runs=2, messages=400, passages=50, compiles=3, token_history=300, stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("loop overhead per step") and "6 steps" in lines[0] and "p95" in lines[0]
    assert "steps before the reply" in lines[1]
    assert lines[2].startswith("context compilation (400 messages, 50 passages") and "p50" in lines[2]
    assert lines[3].startswith("context compilation (after the first eviction")
    assert lines[4].startswith("prompt tokens per step, 300 past messages, whole window")
    assert lines[5].startswith("prompt tokens per step, 300 past messages, recent-message budget (2000 tokens)")
    ratio = float(lines[6].split(":")[1].split("x")[0])
    assert ratio < 0.7  # the budget keeps a long history out of every step's prompt
    assert not Organization.objects.exists() and not AgentRun.objects.exists()
