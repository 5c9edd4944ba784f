"""Measure the agent loop's own overhead per step (with an instant fake model) and context compilation time
for a customer with a long history. Works in a throwaway organisation that is deleted afterwards."""

from __future__ import annotations

import json
import secrets
import statistics
import time
from datetime import timedelta
from itertools import pairwise
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from memory.models import ArchivalPassage, content_hash
from memory.services import blocks_ensure
from support_agent.context import compile_context, context_evict, recent_budget_for
from support_agent.llm import LLMResponse, ToolCallRequest
from support_agent.services import agent_run
from support_agent.tools import tool_schemas
from tickets.models import Customer, Organization, Ticket, TicketMessage

_TOPICS = ["card reader sync", "duplicate charge", "login loop", "export to CSV", "webhook retries", "VAT invoice"]


class InstantModel:
    """A fake model that answers at once with a fixed three-step script: list_tickets, get_ticket, reply."""

    name = "instant fake model"

    def __init__(self, ticket_id: int) -> None:
        self.ticket_id = ticket_id
        self.calls: list[float] = []

    def complete(self, *, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> LLMResponse:
        self.calls.append(time.perf_counter())
        step = sum(1 for m in messages if m.get("role") == "tool")
        script = [
            ("list_tickets", {"status": None, "request_heartbeat": True}),
            ("get_ticket", {"ticket_id": self.ticket_id, "request_heartbeat": True}),
            ("send_message", {"message": "Here is what I found.", "request_heartbeat": False}),
        ]
        name, arguments = script[min(step, 2)]
        return LLMResponse(content=None, tool_calls=[ToolCallRequest(f"b{step}", name, json.dumps(arguments))])

    def summarize(self, *, instruction: str, text: str, max_tokens: int, fallback: str) -> str:
        return fallback


def _percentiles(samples: list[float]) -> str:
    p95 = statistics.quantiles(samples, n=100)[94] if len(samples) > 1 else samples[0]
    return f"p50 {statistics.median(samples):.1f} ms, p95 {p95:.1f} ms"


class Command(BaseCommand):
    help = "Print the agent loop's overhead per step and context compilation time (p50/p95 in ms)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--runs", type=int, default=30, help="Agent runs for the loop overhead.")
        parser.add_argument("--messages", type=int, default=10_000, help="Messages of the long-history customer.")
        parser.add_argument("--passages", type=int, default=10_000, help="Passages of the long-history customer.")
        parser.add_argument("--compiles", type=int, default=30, help="Context compilations to time.")
        parser.add_argument(
            "--token-history",
            type=int,
            default=600,
            help="Past messages of the customer whose prompt tokens are counted.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        suffix = secrets.token_hex(4)
        organization = Organization.objects.create(name=f"Benchmark {suffix}", slug=f"bench-{suffix}")
        try:
            self._loop_overhead(organization, options["runs"])
            self._compilation(organization, options["messages"], options["passages"], options["compiles"])
            self._prompt_tokens(organization, options["token_history"])
        finally:
            organization.delete()

    def _customer(self, organization: Organization, name: str) -> tuple[Customer, Ticket]:
        customer = Customer.objects.create(organization=organization, name=name)
        now = timezone.now()
        ticket = Ticket.objects.create(
            organization=organization,
            customer=customer,
            subject="Card reader not syncing",
            created_at=now,
            updated_at=now,
        )
        blocks_ensure(customer=customer)
        return customer, ticket

    def _loop_overhead(self, organization: Organization, runs: int) -> None:
        customer, ticket = self._customer(organization, "Loop customer")
        _bulk_messages(customer, ticket, 50)
        samples: list[float] = []
        tool_steps: list[float] = []
        for _ in range(max(runs, 1)):
            model = InstantModel(ticket.pk)
            message = TicketMessage.objects.create(
                organization=organization, customer=customer, ticket=ticket, author_role="customer",
                body="Is my card reader fixed?", created_at=timezone.now(),
            )  # fmt: skip
            started = time.perf_counter()
            agent_run(customer=customer, trigger="manual", message=message, backend=model)
            marks = [started, *model.calls[1:], time.perf_counter()]
            durations = [(b - a) * 1000 for a, b in pairwise(marks)]
            samples += durations
            tool_steps += durations[:-1]
        self.stdout.write(
            f"loop overhead per step (instant fake model; {runs} runs, {len(samples)} steps; each step = compile, "
            f"model call, trace writes, tools): {_percentiles(samples)}"
        )
        # The reply step also runs, in this process when REDIS_URL is unset, whatever other apps do after a
        # message is stored (embedding it, delivering it): the tool steps show the loop without that.
        self.stdout.write(f"  of which steps before the reply (list_tickets, get_ticket): {_percentiles(tool_steps)}")

    def _compilation(self, organization: Organization, messages: int, passages: int, compiles: int) -> None:
        customer, ticket = self._customer(organization, "Long-history customer")
        _bulk_messages(customer, ticket, messages)
        _bulk_passages(customer, passages)
        self._time_compiles(customer, f"{messages} messages, {passages} passages, before eviction", compiles)
        compiled = compile_context(customer=customer, new_event="Where is my refund?", tools=tool_schemas())
        context_evict(customer=customer, compiled=compiled, run_messages=[], backend=InstantModel(0))
        self._time_compiles(customer, "after the first eviction into the summary", compiles)

    def _prompt_tokens(self, organization: Organization, history: int) -> None:
        """Prompt tokens per step of a three-step run for a customer with a long history: with the recent-message
        budget as configured, then with it as large as the window (how every prompt was filled before it)."""
        window = settings.SUPPORTMEM_CONTEXT_WINDOW
        figures = {}
        for label, budget in (("whole window (no budget)", window), ("recent-message budget", None)):
            organization.recent_messages_tokens = budget
            organization.save(update_fields=["recent_messages_tokens"])
            customer, ticket = self._customer(organization, f"{history}-message customer ({label})")
            _bulk_messages(customer, ticket, history)
            message = TicketMessage.objects.create(
                organization=organization, customer=customer, ticket=ticket, author_role="customer",
                body="Is my card reader fixed?", created_at=timezone.now(),
            )  # fmt: skip
            run = agent_run(customer=customer, trigger="manual", message=message, backend=InstantModel(ticket.pk))
            per_step = [step.context_tokens for step in run.steps.order_by("index")]
            figures[label] = statistics.mean(per_step)
            shown = budget or recent_budget_for(customer)
            self.stdout.write(
                f"prompt tokens per step, {history} past messages, {label} ({shown} tokens): "
                f"mean {figures[label]:.0f} over {len(per_step)} steps {per_step}"
            )
        organization.recent_messages_tokens = None
        organization.save(update_fields=["recent_messages_tokens"])
        ratio = figures["recent-message budget"] / figures["whole window (no budget)"]
        self.stdout.write(f"  budget / no budget: {ratio:.2f}x prompt tokens per step")

    def _time_compiles(self, customer: Customer, label: str, compiles: int) -> None:
        tools = tool_schemas()
        samples: list[float] = []
        for _ in range(max(compiles, 1)):
            started = time.perf_counter()
            compiled = compile_context(customer=customer, new_event="Where is my refund?", tools=tools)
            samples.append((time.perf_counter() - started) * 1000)
        self.stdout.write(
            f"context compilation ({label}; {len(compiled.units)} messages in context, "
            f"{compiled.tokens_total}/{compiled.context_window} tokens): {_percentiles(samples)}"
        )


def _bulk_messages(customer: Customer, ticket: Ticket, count: int) -> None:
    start = timezone.now() - timedelta(days=730)
    rows = [
        TicketMessage(
            organization_id=customer.organization_id,
            customer=customer,
            ticket=ticket,
            author_role="customer" if n % 2 == 0 else "staff",
            body=f"Message {n} about the {_TOPICS[n % len(_TOPICS)]}: it happened again after the update, "
            f"order {100000 + n}, please check the logs from that afternoon.",
            created_at=start + timedelta(minutes=n * 1440 * 730 / max(count, 1)),
        )
        for n in range(count)
    ]
    TicketMessage.objects.bulk_create(rows, batch_size=2000)


def _bulk_passages(customer: Customer, count: int) -> None:
    rows = []
    for n in range(count):
        text = f"Fact {n}: the customer's {_TOPICS[n % len(_TOPICS)]} case {n} was resolved by support."
        rows.append(
            ArchivalPassage(
                organization_id=customer.organization_id, customer=customer, text=text, text_hash=content_hash(text)
            )
        )
    ArchivalPassage.objects.bulk_create(rows, batch_size=2000)
