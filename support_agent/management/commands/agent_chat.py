"""Talk to the agent as a customer: `agent_chat --org SLUG --customer EXTERNAL_ID [--message TEXT]`."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.http import Http404

from support_agent.llm import backend_configured
from support_agent.models import AgentRun
from support_agent.services import agent_run
from tickets.models import Customer, Organization, Ticket, TicketMessage
from tickets.selectors import customer_by_external_id
from tickets.services import message_ingest

# Typed alone at the prompt, these end the session instead of being sent to the agent.
QUIT_WORDS = frozenset({"quit", "exit", "/quit", "/exit", ":q"})


class Command(BaseCommand):
    help = "Send a message to the agent as one customer and print its reply (-v 2 prints each step)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="Organisation slug.")
        parser.add_argument("--customer", required=True, help="An external id, email or id of the customer.")
        parser.add_argument("--message", help="One message to send; without it, an interactive session.")

    def handle(self, *args: Any, **options: Any) -> None:
        organization = Organization.objects.filter(slug=options["org"]).first()
        if organization is None:
            raise CommandError(f"No organisation with slug {options['org']!r}.")
        try:
            customer = customer_by_external_id(organization=organization, external_id=options["customer"])
        except Http404:
            raise CommandError(f"No customer {options['customer']!r} in {organization.slug}.") from None
        verbosity = int(options["verbosity"])
        if verbosity >= 1:
            self.stderr.write(f"Talking to the agent as {customer} ({backend_configured()} backend).")
        if options["message"] is not None:
            run = self._turn(customer, options["message"], verbosity)
            if run.status == AgentRun.Status.FAILED:
                raise CommandError(f"The run failed ({run.stop_reason}): {run.error}")
            return
        self._interactive(customer, verbosity)

    def _interactive(self, customer: Customer, verbosity: int) -> None:
        self.stderr.write("Type a message and press Enter; quit, exit, an empty line or Ctrl-D ends the session.")
        while True:
            try:
                text = input("you> ")
            except (EOFError, KeyboardInterrupt):
                self.stderr.write("")
                return
            if not text.strip() or text.strip().casefold() in QUIT_WORDS:
                return
            run = self._turn(customer, text, verbosity)
            if run.status == AgentRun.Status.FAILED:
                self.stderr.write(f"The run failed ({run.stop_reason}): {run.error}")

    def _turn(self, customer: Customer, text: str, verbosity: int) -> AgentRun:
        if not text.strip():
            raise CommandError("The message is empty.")
        # trigger_agent=False: this command runs the agent itself, in the foreground.
        message, _ = message_ingest(
            customer=customer,
            body=text,
            author_role=TicketMessage.Role.CUSTOMER,
            author_name=customer.name,
            channel=Ticket.Channel.CHAT,
            trigger_agent=False,
        )
        run = agent_run(customer=customer, trigger=AgentRun.Trigger.MANUAL, message=message)
        if verbosity >= 2:
            self._print_steps(run)
        self.stdout.write(run.reply or f"(no reply: the run stopped with {run.stop_reason or run.status})")
        return run

    def _print_steps(self, run: AgentRun) -> None:
        for step in run.steps.order_by("index"):
            self.stdout.write(
                f"-- step {step.index}: {step.latency_ms} ms, {step.context_tokens} context tokens, "
                f"{step.prompt_tokens}+{step.completion_tokens} tokens billed"
            )
            results = {result["tool_call_id"]: result for result in step.tool_results}
            for call in step.tool_calls:
                self.stdout.write(f"   call {call['name']}({call['arguments']})")
                result = results.get(call["id"], {})
                self.stdout.write(f"   {'ok' if result.get('ok') else 'error'}: {str(result.get('content'))[:300]}")
            if not step.tool_calls:
                self.stdout.write(f"   text: {json.dumps(_content(step.response))[:300]}")
        self.stdout.write(f"-- run {run.pk}: {run.status}, stopped by {run.stop_reason}")


def _content(response: dict[str, Any]) -> str:
    """The text of a recorded model response (a raw completion, or the offline model's message)."""
    choices = response.get("choices") or []
    message = choices[0].get("message", {}) if choices else response
    return str(message.get("content") or "")
