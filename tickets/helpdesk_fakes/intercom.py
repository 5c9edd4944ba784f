"""A loopback fake of Intercom's conversation API: the conversation search with cursor pagination, single
conversations with their parts, rate-limit headers, and the webhook notification for one message, in the shapes
Intercom documents (see ``tickets.helpdesks.intercom``)."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any

from tickets.helpdesk_fakes.common import AGENT_EMAIL, AGENT_ID, AGENT_NAME, Answer, FakeHelpdesk

PER_PAGE_MAX = 150


@dataclass
class FakeIntercom(FakeHelpdesk):
    """An Intercom workspace. Conversation ``n`` is ``1_000_000_000 + n`` (ids of one width, so a fault aimed at one
    conversation's path never hits another); its opening message (``source``) and parts have ids of their own.
    ``rate_limit`` requests a window, then ``X-RateLimit-Remaining`` says 0 until the reset (an epoch 30 s ahead)."""

    token: str = "Bearer intercom-access-token"
    rate_limit: int | None = None

    def conversation_id(self, n: int) -> str:
        return str(1_000_000_000 + n)

    def contact_id(self, number: int) -> str:
        return f"65f0{number:020x}"

    def message_id(self, n: int, j: int) -> str:
        """The source's id for the opening message, a conversation part's id for the others."""
        return str(2_000_000_000 + n) if j == 0 else str(5_000_000_000 + n * 1000 + j)

    def contact(self, n: int) -> dict[str, Any]:
        number = self.customer_number(n)
        return {
            "type": "user",
            "id": self.contact_id(number),
            "name": self.customer_name(number),
            "email": self.customer_email(number),
        }

    def admin(self) -> dict[str, Any]:
        return {"type": "admin", "id": str(AGENT_ID), "name": AGENT_NAME, "email": AGENT_EMAIL}

    def stamp(self, value: Any) -> int:
        return int(value.timestamp())

    def source_json(self, n: int) -> dict[str, Any]:
        return {
            "type": "email",
            "id": self.message_id(n, 0),
            "delivered_as": "customer_initiated",
            "subject": self.subject(n),
            "body": f"<p>{self.comment_body(n, 0)}</p>",
            "author": self.contact(n),
            "attachments": [],
            "url": None,
            "redacted": False,
        }

    def part_json(self, n: int, j: int) -> dict[str, Any]:
        when = self.stamp(self.message_time(n, j))
        return {
            "type": "conversation_part",
            "id": self.message_id(n, j),
            "part_type": "note" if self.is_note(j) else "comment",
            "body": f"<p>{self.comment_body(n, j)}</p>",
            "created_at": when,
            "updated_at": when,
            "notified_at": when,
            "assigned_to": None,
            "author": self.contact(n) if self.by_customer(j) else self.admin(),
            "attachments": [],
            "external_id": None,
            "redacted": False,
        }

    def close_part(self, n: int) -> dict[str, Any]:
        """Closing a solved conversation without a message: a part with no words, which is not a message."""
        when = self.stamp(self.updated(n))
        return {
            "type": "conversation_part",
            "id": str(7_000_000_000 + n),
            "part_type": "close",
            "body": None,
            "created_at": when,
            "updated_at": when,
            "notified_at": when,
            "assigned_to": None,
            "author": self.admin(),
            "attachments": [],
            "external_id": None,
            "redacted": False,
        }

    def conversation_json(self, n: int, parts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The conversation model; ``parts`` None means all of them (``GET /conversations/{id}``)."""
        if parts is None:
            parts = [self.part_json(n, j) for j in range(1, self.comments)]
            if self.solved(n):
                parts.append(self.close_part(n))
        number = self.customer_number(n)
        return {
            "type": "conversation",
            "id": self.conversation_id(n),
            "title": self.subject(n),
            "created_at": self.stamp(self.created(n)),
            "updated_at": self.stamp(self.updated(n)),
            "waiting_since": None,
            "snoozed_until": None,
            "source": self.source_json(n),
            "contacts": {
                "type": "contact.list",
                "contacts": [{"type": "contact", "id": self.contact_id(number), "external_id": f"cust_{number}"}],
            },
            "teammates": {"type": "admin.list", "admins": [{"type": "admin", "id": str(AGENT_ID)}]},
            "admin_assignee_id": AGENT_ID,
            "team_assignee_id": None,
            "open": not self.solved(n),
            "state": "closed" if self.solved(n) else "open",
            "read": True,
            "priority": "not_priority",
            "tags": {"type": "tag.list", "tags": [{"type": "tag", "id": str(n % 6), "name": f"topic{n % 6}"}]},
            "custom_attributes": {},
            "conversation_parts": {
                "type": "conversation_part.list",
                "conversation_parts": parts,
                "total_count": len(parts),
            },
        }

    def webhook_event(self, n: int, j: int) -> dict[str, Any]:
        """The notification Intercom sends when message j of conversation n is added: the conversation model with
        its source and the new part (none for the opening message)."""
        if j == 0:
            topic, parts = "conversation.user.created", []
        else:
            kind = "user.replied" if self.by_customer(j) else ("admin.noted" if self.is_note(j) else "admin.replied")
            topic, parts = f"conversation.{kind}", [self.part_json(n, j)]
        sent = self.stamp(self.message_time(n, j)) + 1
        return {
            "type": "notification_event",
            "app_id": "fake01",
            "id": f"notif_{n}_{j}",
            "topic": topic,
            "data": {"type": "notification_event_data", "item": self.conversation_json(n, parts)},
            "links": {},
            "delivery_status": "pending",
            "delivery_attempts": 1,
            "delivered_at": 0,
            "first_sent_at": sent,
            "created_at": sent,
            "self": None,
        }

    # ------------------------------------------------------------ HTTP

    def authorized(self, headers: dict[str, str]) -> bool:
        return headers.get("authorization") == self.token

    def unauthorized(self) -> Answer:
        body = {
            "type": "error.list",
            "request_id": "fake",
            "errors": [{"code": "unauthorized", "message": "Access Token Invalid"}],
        }
        return 401, body, {}

    def route(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Answer:
        if path == "/conversations/search" and method == "POST":
            return self._search(json.loads(body or b"{}"))
        parts = path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "conversations" and method == "GET":
            n = int(parts[1]) - 1_000_000_000 if parts[1].isdigit() else 0
            if not 1 <= n <= self.tickets:
                return (
                    404,
                    {"type": "error.list", "errors": [{"code": "not_found", "message": "Resource Not Found"}]},
                    {},
                )
            return 200, self.conversation_json(n), self._rate_headers()
        return 404, {"type": "error.list", "errors": [{"code": "not_found", "message": "Not Found"}]}, {}

    def _rate_headers(self) -> dict[str, str]:
        if self.rate_limit is None:
            return {}
        remaining = self.rate_limit - len(self.requests) % self.rate_limit
        if remaining == self.rate_limit:
            remaining = 0
        reset = int(time.time()) + 30  # far enough ahead that a slow client still has a wait left
        return {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset),
        }

    def _search(self, request: dict[str, Any]) -> Answer:
        condition = request.get("query") or {}
        if condition.get("field") != "updated_at" or condition.get("operator") != ">":
            return 400, {"type": "error.list", "errors": [{"code": "parameter_invalid", "message": "query"}]}, {}
        start = int(condition["value"])
        pagination = request.get("pagination") or {}
        size = min(int(pagination.get("per_page", 20)), PER_PAGE_MAX)
        matching = [n for n in range(1, self.tickets + 1) if self.stamp(self.updated(n)) >= start]
        offset = 0
        if pagination.get("starting_after"):
            offset = int(base64.urlsafe_b64decode(pagination["starting_after"].encode()).decode().strip("[]"))
        numbers = matching[offset : offset + size]
        end = offset + size
        pages: dict[str, Any] = {
            "type": "pages",
            "page": offset // size + 1,
            "per_page": size,
            "total_pages": max(1, -(-len(matching) // size)),
        }
        if end < len(matching):
            pages["next"] = {"per_page": size, "starting_after": base64.urlsafe_b64encode(f"[{end}]".encode()).decode()}
        summaries = [{k: v for k, v in self.conversation_json(n).items() if k != "conversation_parts"} for n in numbers]
        body = {"type": "conversation.list", "pages": pages, "total_count": len(matching), "conversations": summaries}
        return 200, body, self._rate_headers()
