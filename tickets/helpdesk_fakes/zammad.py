"""A loopback fake of Zammad's REST API for history reads: the ticket list by pages (``expand=true``), each
ticket's articles and the users they name, in the shapes docs.zammad.org shows (see ``tickets.helpdesks.zammad``),
and the trigger webhook the same article would have sent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tickets.helpdesk_fakes.common import AGENT_EMAIL, AGENT_ID, Answer, FakeHelpdesk, iso


@dataclass
class FakeZammad(FakeHelpdesk):
    """A Zammad system: ticket ``n`` has id ``n`` and number ``31000 + n``; customers are users
    ``1_000_000 + customer number``; article j of ticket n is ``n * 1000 + j``. Customers write HTML email,
    agents answer by email and write internal notes in plain text. Tickets listed in ``merged`` were merged
    into another one (state "merged").

    ``per_page_max`` is TicketsController#index's cap (100)."""

    token: str = "zammad-access-token"
    per_page_max: int = 100
    merged: tuple[int, ...] = ()
    user_reads: list[int] = field(default_factory=list)

    def customer_id(self, n: int) -> int:
        return 1_000_000 + self.customer_number(n)

    def article_id(self, n: int, j: int) -> int:
        return n * 1000 + j

    def state(self, n: int) -> str:
        if n in self.merged:
            return "merged"
        return "closed" if self.solved(n) else "open"

    # ------------------------------------------------------------ shapes

    def user_json(self, user_id: int) -> dict[str, Any]:
        if user_id == AGENT_ID:
            first, last, email = "Sam", "Support", AGENT_EMAIL
        else:
            number = user_id - 1_000_000
            first, last = self.customer_name(number).split(" ", 1)
            email = self.customer_email(number)
        return {
            "id": user_id,
            "organization_id": None,
            "login": email,
            "firstname": first,
            "lastname": last,
            "email": email,
            "web": "",
            "phone": "",
            "active": True,
            "verified": False,
            "vip": False,
            "note": "",
            "role_ids": [2] if user_id == AGENT_ID else [3],
            "created_at": iso(self.created(1)),
            "updated_at": iso(self.created(1)),
        }

    def ticket_json(self, n: int) -> dict[str, Any]:
        """A ticket as ``GET /api/v1/tickets?expand=true`` renders it (attributes_with_association_names)."""
        customer = self.user_json(self.customer_id(n))
        return {
            "id": n,
            "group_id": 1,
            "priority_id": 2,
            "state_id": 4 if self.solved(n) else 2,
            "organization_id": None,
            "number": str(31000 + n),
            "title": self.subject(n),
            "owner_id": AGENT_ID,
            "customer_id": self.customer_id(n),
            "note": None,
            "last_contact_at": iso(self.updated(n)),
            "create_article_type_id": 1,
            "create_article_sender_id": 2,
            "article_count": self.comments,
            "preferences": {},
            "updated_by_id": AGENT_ID,
            "created_by_id": self.customer_id(n),
            "created_at": iso(self.created(n)),
            "updated_at": iso(self.updated(n)),
            "article_ids": [self.article_id(n, j) for j in range(self.comments)],
            "group": "Users",
            "state": self.state(n),
            "priority": "2 normal",
            "owner": AGENT_EMAIL,
            "customer": customer["login"],
            "created_by": customer["login"],
            "updated_by": AGENT_EMAIL,
            "create_article_type": "email",
            "create_article_sender": "Customer",
        }

    def article_json(self, n: int, j: int) -> dict[str, Any]:
        """An article as ``GET /api/v1/ticket_articles/by_ticket/{id}`` renders it."""
        customer = self.user_json(self.customer_id(n))
        by_customer, note = self.by_customer(j), self.is_note(j)
        body = self.comment_body(n, j)
        named = f"{customer['firstname']} {customer['lastname']} <{customer['email']}>"
        return {
            "id": self.article_id(n, j),
            "ticket_id": n,
            "type_id": 10 if note else 1,
            "sender_id": 2 if by_customer else 1,
            "from": named if by_customer else "Sam Support via <support@helpdesk.example>",
            "to": "support@helpdesk.example" if by_customer else named,
            "cc": None,
            "subject": self.subject(n),
            "reply_to": None,
            "message_id": None,
            "message_id_md5": None,
            "in_reply_to": None,
            "content_type": "text/plain" if note else "text/html",
            "references": None,
            "body": body if note else f"<div>{body}</div>",
            "internal": note,
            "preferences": {},
            "updated_by_id": self.customer_id(n) if by_customer else AGENT_ID,
            "created_by_id": self.customer_id(n) if by_customer else AGENT_ID,
            "origin_by_id": None,
            "created_at": iso(self.message_time(n, j)),
            "updated_at": iso(self.message_time(n, j)),
            "attachments": [],
            "type": "note" if note else "email",
            "sender": "Customer" if by_customer else "Agent",
            "created_by": customer["login"] if by_customer else AGENT_EMAIL,
            "updated_by": customer["login"] if by_customer else AGENT_EMAIL,
        }

    def webhook_article_created(self, n: int, j: int) -> tuple[dict[str, str], dict[str, Any]]:
        """The trigger webhook (default payload) Zammad sends when article j of ticket n is created: the ticket
        and the article with their users as objects."""
        ticket = self.ticket_json(n) | {"updated_at": iso(self.message_time(n, j)), "tags": ["imported"]}
        ticket["customer"] = self.user_json(self.customer_id(n))
        ticket["owner"] = self.user_json(AGENT_ID)
        article = self.article_json(n, j)
        article["created_by"] = self.user_json(article["created_by_id"])
        headers = {"x-zammad-trigger": "supportmem: article created", "x-zammad-delivery": f"delivery-{n}-{j}"}
        return headers, {"ticket": ticket, "article": article}

    # ------------------------------------------------------------ HTTP

    def authorized(self, headers: dict[str, str]) -> bool:
        return headers.get("authorization") == f"Token token={self.token}"

    def unauthorized(self) -> Answer:
        return 401, {"error": "Authentication failed", "error_human": "Authentication failed"}, {}

    def route(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Answer:
        parts = path.strip("/").split("/")
        if parts == ["api", "v1", "tickets"]:
            return 200, self._list(query), {}
        if parts[:4] == ["api", "v1", "ticket_articles", "by_ticket"] and len(parts) == 5 and parts[4].isdigit():
            n = int(parts[4])
            if not 1 <= n <= self.tickets:
                return 404, {"error": "Couldn't find Ticket with 'id'=" + parts[4]}, {}
            return 200, [self.article_json(n, j) for j in range(self.comments)], {}
        if parts[:3] == ["api", "v1", "users"] and len(parts) == 4 and parts[3].isdigit():
            user_id = int(parts[3])
            with self.lock:
                self.user_reads.append(user_id)
            known = user_id == AGENT_ID or 0 <= user_id - 1_000_000 < self.customers
            if not known:
                return 404, {"error": "Couldn't find User with 'id'=" + parts[3]}, {}
            return 200, self.user_json(user_id), {}
        return 404, {"error": "No route matches"}, {}

    def _list(self, query: dict[str, str]) -> list[dict[str, Any]]:
        size = min(int(query.get("per_page", self.per_page_max)), self.per_page_max)
        page = max(1, int(query.get("page", 1)))
        numbers = range((page - 1) * size + 1, min(page * size, self.tickets) + 1)
        tickets = [self.ticket_json(n) for n in numbers]
        if query.get("expand") != "true":
            names = {"group", "state", "priority", "owner", "customer", "created_by", "updated_by", "article_ids"}
            names |= {"create_article_type", "create_article_sender"}
            tickets = [{key: value for key, value in t.items() if key not in names} for t in tickets]
        return tickets
