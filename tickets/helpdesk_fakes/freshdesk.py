"""A loopback fake of Freshdesk's API v2 as the history reader uses it: the ticket list (updated_since, ordering,
``include``, Link-header pages, the 300-page limit), each ticket's conversations, the agents, and the rate-limit
headers, in the shapes Freshdesk documents (see ``tickets.helpdesks.freshdesk``)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tickets.helpdesk_fakes.common import AGENT_EMAIL, AGENT_ID, AGENT_NAME, EPOCH, Answer, FakeHelpdesk, iso

_DEFAULT_PER_PAGE = 30


@dataclass
class FakeFreshdesk(FakeHelpdesk):
    """A Freshdesk account: ticket ``n`` has id ``n``; requesters are contacts ``1_000_000 + customer number``.
    Message 0 of a ticket is its description, the others are conversations. Open tickets have status 2, solved
    ones 4 (Resolved).

    ``max_pages``: the ticket list's page limit (Freshdesk's is 300; tests make it small). ``rate_total``: the
    credits a minute; ``X-RateLimit-Remaining`` counts down from it by each request's cost."""

    api_key: str = "fd-api-key"
    per_page_max: int = 100
    max_pages: int = 300
    conversations_page_max: int = 100
    rate_total: int = 100_000
    now: datetime = EPOCH + timedelta(days=3650)  # what "the last 30 days" is measured from
    credits_used: int = 0

    def requester_id(self, n: int) -> int:
        return 1_000_000 + self.customer_number(n)

    def conversation_id(self, n: int, j: int) -> int:
        return 5_000_000_000 + n * 1000 + j

    def requester_json(self, n: int) -> dict[str, Any]:
        number = self.customer_number(n)
        return {
            "id": self.requester_id(n),
            "name": self.customer_name(number),
            "email": self.customer_email(number),
            "mobile": None,
            "phone": None,
        }

    def ticket_json(self, n: int, include: set[str]) -> dict[str, Any]:
        ticket: dict[str, Any] = {
            "id": n,
            "subject": self.subject(n),
            "type": "Question",
            "status": 4 if self.solved(n) else 2,
            "priority": 2,
            "source": 1,
            "requester_id": self.requester_id(n),
            "responder_id": AGENT_ID,
            "company_id": None,
            "group_id": None,
            "product_id": None,
            "email_config_id": None,
            "cc_emails": [],
            "fwd_emails": [],
            "reply_cc_emails": [],
            "to_emails": None,
            "spam": False,
            "is_escalated": False,
            "fr_escalated": False,
            "due_by": iso(self.created(n) + timedelta(days=3)),
            "fr_due_by": iso(self.created(n) + timedelta(days=1)),
            "tags": ["imported", f"topic{n % 6}"],
            "custom_fields": {},
            "created_at": iso(self.created(n)),
            "updated_at": iso(self.updated(n)),
        }
        if "description" in include:
            body = self.comment_body(n, 0)
            ticket |= {"description": f"<div>{escape(body)}</div>", "description_text": body}
        if "requester" in include:
            ticket["requester"] = self.requester_json(n)
        return ticket

    def conversation_json(self, n: int, j: int) -> dict[str, Any]:
        by_customer = self.by_customer(j)
        body = self.comment_body(n, j)
        return {
            "id": self.conversation_id(n, j),
            "body": f"<div>{escape(body)}</div>",
            "body_text": body,
            "incoming": by_customer,
            "private": self.is_note(j),
            "user_id": self.requester_id(n) if by_customer else AGENT_ID,
            "support_email": None if by_customer or self.is_note(j) else "support@acme.freshdesk.com",
            "source": 2 if self.is_note(j) else 0,  # 0 a reply, 2 a note
            "category": 2,
            "ticket_id": n,
            "to_emails": [],
            "from_email": self.customer_email(self.customer_number(n)) if by_customer else None,
            "cc_emails": [],
            "bcc_emails": [],
            "attachments": [],
            "created_at": iso(self.message_time(n, j)),
            "updated_at": iso(self.message_time(n, j)),
        }

    def agent_json(self) -> dict[str, Any]:
        return {
            "id": AGENT_ID,
            "type": "support_agent",
            "available": True,
            "occasional": False,
            "ticket_scope": 1,
            "created_at": iso(EPOCH),
            "updated_at": iso(EPOCH),
            "contact": {"active": True, "email": AGENT_EMAIL, "name": AGENT_NAME, "language": "en"},
        }

    def webhook_comment_event(self, n: int, j: int) -> dict[str, Any]:
        """What the documented automation rule's JSON template renders when message j of ticket n is added
        (``{{ticket.latest_public_comment}}`` as "Name : <html>", the private one for a note)."""
        requester = self.requester_json(n)
        hook: dict[str, Any] = {
            "triggered_event": "{ticket_action:created}" if j == 0 else "{ticket_action:updated}",
            "ticket_id": str(n),
            "ticket_url": f"https://acme.freshdesk.com/helpdesk/tickets/{n}",
            "ticket_type": "Question",
            "ticket_subject": self.subject(n),
            "ticket_description": f"<div>{escape(self.comment_body(n, 0))}</div>",
            "ticket_status": "Open",
            "ticket_priority": "Medium",
            "requester_name": requester["name"],
            "requester_email": requester["email"],
        }
        if j > 0:
            author = requester["name"] if self.by_customer(j) else AGENT_NAME
            rendered = f"{author} : <div>{escape(self.comment_body(n, j))}</div>"
            if self.is_note(j):
                hook |= {"triggered_event": "{note_type:private}", "ticket_latest_private_comment": rendered}
            else:
                hook["ticket_latest_public_comment"] = rendered
            if self.by_customer(j):
                hook["comment_author_role"] = "customer"  # what docs/webhooks.md asks a customer-reply rule to add
        return {"freshdesk_webhook": hook}

    # ------------------------------------------------------------ HTTP

    def authorized(self, headers: dict[str, str]) -> bool:
        expected = "Basic " + base64.b64encode(f"{self.api_key}:X".encode()).decode()
        return headers.get("authorization") == expected

    def unauthorized(self) -> Answer:
        return 401, {"code": "invalid_credentials", "message": "You have to be logged in to perform this action."}, {}

    def answer(self, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> Answer:
        result = super().answer(method, target, headers, body)
        if result is None:
            return None
        status, payload, extra = result
        include = parse_qs(urlsplit(target).query).get("include", [""])[-1]
        cost = 1 + 2 * len([name for name in include.split(",") if name])  # each include costs two more credits
        with self.lock:
            self.credits_used += cost
            remaining = max(0, self.rate_total - self.credits_used)
        rate = {
            "X-RateLimit-Total": str(self.rate_total),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Used-CurrentRequest": str(cost),
        }
        return status, payload, extra | rate

    def route(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Answer:
        if method != "GET":
            return 405, {"code": "method_not_allowed", "message": "Method not allowed"}, {}
        if path == "/api/v2/tickets":
            return self._tickets(path, query)
        if path == "/api/v2/agents":
            return self._paged(path, query, [self.agent_json()], self.per_page_max)
        parts = path.strip("/").split("/")
        if len(parts) == 5 and parts[:3] == ["api", "v2", "tickets"] and parts[4] == "conversations":
            n = int(parts[3])
            if not 1 <= n <= self.tickets:
                return 404, {"code": "access_denied", "message": "Record not found"}, {}
            conversations = [self.conversation_json(n, j) for j in range(1, self.comments)]
            return self._paged(path, query, conversations, self.conversations_page_max)
        return 404, {"code": "invalid_url", "message": "Invalid URL"}, {}

    def _tickets(self, path: str, query: dict[str, str]) -> Answer:
        page = int(query.get("page", 1))
        if page > self.max_pages:
            errors = [{"field": "page", "message": f"It should be less than or equal to {self.max_pages}"}]
            return 400, {"description": "Validation failed", "errors": errors}, {}
        numbers = list(range(1, self.tickets + 1))
        if "updated_since" in query:
            since = datetime.fromisoformat(query["updated_since"].replace("Z", "+00:00"))
            numbers = [n for n in numbers if self.updated(n) >= since]
        else:  # Freshdesk's default: only tickets created in the last 30 days
            numbers = [n for n in numbers if self.created(n) >= self.now.astimezone(UTC) - timedelta(days=30)]
        field = {"updated_at": self.updated, "created_at": self.created}.get(query.get("order_by", "created_at"))
        if field is None:
            return 400, {"description": "Validation failed", "errors": [{"field": "order_by"}]}, {}
        numbers.sort(key=lambda n: (field(n), n), reverse=query.get("order_type", "desc") == "desc")
        include = set(filter(None, query.get("include", "").split(",")))
        tickets = [self.ticket_json(n, include) for n in numbers]
        return self._paged(path, query, tickets, self.per_page_max)

    def _paged(self, path: str, query: dict[str, str], entries: list[Any], most: int) -> Answer:
        """One page of a list, with ``Link: <next page>; rel="next"`` while more follow (Freshdesk's paging)."""
        size = min(int(query.get("per_page", _DEFAULT_PER_PAGE)), most)
        page = int(query.get("page", 1))
        shown = entries[(page - 1) * size : page * size]
        extra = {}
        if page * size < len(entries):
            following = urlencode(query | {"page": str(page + 1)})
            extra["Link"] = f'<{self.url}{path}?{following}>; rel="next"'
        return 200, shown, extra
