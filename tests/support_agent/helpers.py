"""Small shared steps for agent tests."""

from __future__ import annotations

import json
from typing import Any

from tickets.models import Customer, Ticket, TicketMessage
from tickets.services import message_ingest


def customer_says(customer: Customer, body: str, ticket: Ticket | None = None) -> TicketMessage:
    message, _ = message_ingest(customer=customer, ticket=ticket, body=body, author_role="customer", announce=False)
    return message


def tool_results(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool results a request carried back to the model, decoded."""
    return [json.loads(m["content"]) for m in request["messages"] if m["role"] == "tool"]
