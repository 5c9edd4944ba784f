"""The heartbeat loop: the one place a run's steps happen.

Each step: compile the context (evicting into the recursive summary first if it overflows), call the
model with the tools, record the step, execute the tool calls, then ask the pure ``decide_continuation``
whether to go on. It continues when a tool asked for a heartbeat or failed (the model sees the error and
may retry) and stops otherwise, or at the organisation's step limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import F
from django.utils import timezone

from support_agent.context import CompiledContext, compile_context, context_evict
from support_agent.llm import Backend, LLMResponse
from support_agent.models import AgentRun, AgentStep
from support_agent.tools import (
    RunContext,
    SendMessage,
    ToolOutcome,
    send_message,
    tool_execute,
    tool_label,
    tool_schemas,
)
from telemetry.metrics import AGENT_STEP_SECONDS, LLM_TOKENS
from tickets.models import TicketMessage

Emit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Continuation:
    proceed: bool
    stop_reason: str | None = None


def decide_continuation(
    *, outcomes: Sequence[ToolOutcome], steps_taken: int, step_limit: int, finish_reason: str | None = None
) -> Continuation:
    """Whether the run takes another step. Pure.

    A completion cut at the token limit (finish_reason "length") stops the run with stop reason length: its
    text or tool arguments are incomplete, so nothing of it was executed or delivered.
    No tool calls: the model ended its turn. Any failed call, or one flagged with a warning (a block over
    its limit): continue, so the model can react. Any call with request_heartbeat: continue. Otherwise end
    the turn. Continuing past the organisation's step limit is refused with stop reason step_limit.
    """
    if finish_reason == "length":
        return Continuation(False, AgentRun.StopReason.LENGTH)
    if not outcomes:
        return Continuation(False, AgentRun.StopReason.END_TURN)
    if not any(outcome.heartbeat or outcome.flagged or not outcome.ok for outcome in outcomes):
        return Continuation(False, AgentRun.StopReason.END_TURN)
    if steps_taken >= step_limit:
        return Continuation(False, AgentRun.StopReason.STEP_LIMIT)
    return Continuation(True)


@dataclass
class Turn:
    """What the loop needs to know about the run besides the tools' context."""

    backend: Backend
    new_event: str | None = None
    new_event_message: TicketMessage | None = None
    until: datetime | None = None
    instructions: str | None = None


def run_loop(*, ctx: RunContext, turn: Turn, emit: Emit) -> str:
    """Run steps until the model stops or the step limit; returns the stop reason. LLMError propagates."""
    run_messages: list[dict[str, Any]] = []
    tools = tool_schemas(allow_reply=ctx.allow_reply)
    step_limit = max(ctx.customer.organization.step_limit, 1)
    for index in range(step_limit):
        compiled = _context_for_step(ctx, turn, run_messages, tools)
        started = time.perf_counter()
        response = turn.backend.complete(messages=compiled.messages, tools=tools)
        elapsed = time.perf_counter() - started
        latency_ms = round(elapsed * 1000)
        AGENT_STEP_SECONDS.observe(elapsed)
        LLM_TOKENS.labels(turn.backend.name, "prompt").inc(response.prompt_tokens)
        LLM_TOKENS.labels(turn.backend.name, "completion").inc(response.completion_tokens)
        ctx.step = _step_open(ctx.run, index, compiled, response, latency_ms)
        outcomes = [] if response.finish_reason == "length" else _execute(ctx, response, index, emit)
        _step_close(ctx.step, ctx.run, outcomes)
        run_messages.append(response.as_message())
        run_messages.extend(outcome.as_message() for outcome in outcomes)
        decision = decide_continuation(
            outcomes=outcomes, steps_taken=index + 1, step_limit=step_limit, finish_reason=response.finish_reason
        )
        if not decision.proceed:
            return decision.stop_reason or AgentRun.StopReason.END_TURN
    return AgentRun.StopReason.STEP_LIMIT


def _context_for_step(
    ctx: RunContext, turn: Turn, run_messages: list[dict[str, Any]], tools: list[dict[str, Any]]
) -> CompiledContext:
    def compile_now() -> CompiledContext:
        return compile_context(
            customer=ctx.customer,
            new_event=turn.new_event,
            new_event_message=turn.new_event_message,
            run_messages=run_messages,
            until=turn.until,
            tools=tools,
            instructions=turn.instructions,
            include_internal=ctx.sees_internal,
        )

    compiled = compile_now()
    if compiled.overflow:
        # At 100% the oldest messages move into the recursive summary; they stay in recall memory.
        context_evict(customer=ctx.customer, compiled=compiled, run_messages=run_messages, backend=turn.backend)
        compiled = compile_now()
    return compiled


def _step_open(
    run: AgentRun, index: int, compiled: CompiledContext, response: LLMResponse, latency_ms: int
) -> AgentStep:
    """Store the step before its tools run, so every memory change can point at it."""
    return AgentStep.objects.create(
        run=run,
        index=index,
        request_messages=compiled.messages,
        response={**response.raw, "attempts": response.attempts} if response.raw else response.as_message(),
        tool_calls=[{"id": c.id, "name": c.name, "arguments": c.arguments} for c in response.tool_calls],
        prompt_tokens=response.prompt_tokens,
        completion_tokens=response.completion_tokens,
        context_tokens=compiled.tokens_total,
        latency_ms=latency_ms,
    )


def _execute(ctx: RunContext, response: LLMResponse, index: int, emit: Emit) -> list[ToolOutcome]:
    if not response.tool_calls:
        # A model that answers in plain text instead of calling send_message still gets its answer delivered.
        if response.content and response.content.strip() and ctx.allow_reply:
            send_message(SendMessage(message=response.content, request_heartbeat=False), ctx)
        return []
    outcomes = []
    for call in response.tool_calls:
        emit({"type": "step", "index": index, "tool": call.name, "label": tool_label(call.name, call.arguments)})
        outcomes.append(tool_execute(call_id=call.id, name=call.name, raw_arguments=call.arguments, ctx=ctx))
    return outcomes


def _step_close(step: AgentStep, run: AgentRun, outcomes: list[ToolOutcome]) -> None:
    step.tool_results = [outcome.as_record() for outcome in outcomes]
    step.save(update_fields=["tool_results"])
    AgentRun.objects.filter(pk=run.pk).update(
        heartbeat_at=timezone.now(),  # the run's lease: agent_runs_sweep fails a run silent for too long
        step_count=F("step_count") + 1,
        prompt_tokens=F("prompt_tokens") + step.prompt_tokens,
        completion_tokens=F("completion_tokens") + step.completion_tokens,
    )
