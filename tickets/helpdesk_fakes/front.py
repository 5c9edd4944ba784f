"""A loopback fake of Front's Core API for history: conversations listed (and searched with ``after:``) with
``_pagination.next`` page tokens, each conversation's messages and comments paged the same way, rate-limit
headers, and the rule webhook for one message, in the shapes Front documents (see ``tickets.helpdesks.front``)."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlencode

from tickets.helpdesk_fakes.common import AGENT_EMAIL, AGENT_ID, AGENT_NAME, Answer, FakeHelpdesk

PAGE_LIMIT = 100


@dataclass
class FakeFront(FakeHelpdesk):
    """A Front company. Conversation ``n`` is ``cnv_`` and six hex digits (one width, so a fault aimed at one
    conversation's path never hits another). Message ``j`` is a message (``msg_``), or a comment (``com_``) when it
    is the ticket's internal note. ``messages_page_max`` pages messages and comments more finely than Front's 100.
    ``rate_limit`` requests a window, then ``X-RateLimit-Remaining`` says 0 until the reset (an epoch 30 s ahead)."""

    token: str = "Bearer front-api-token"
    messages_page_max: int = PAGE_LIMIT
    rate_limit: int | None = None
    trashed: tuple[int, ...] = ()  # conversations in the trash: status "deleted"

    def conversation_id(self, n: int) -> str:
        return f"cnv_{n:06x}"

    def contact_id(self, number: int) -> str:
        return f"crd_{number:05x}"

    def message_id(self, n: int, j: int) -> str:
        return f"{'com' if self.is_note(j) else 'msg'}_{n:06x}{j:03x}"

    def teammate(self) -> dict[str, Any]:
        first, last = AGENT_NAME.split(" ", 1)
        return {
            "_links": {"self": f"{self.url}/teammates/tea_{AGENT_ID:x}"},
            "id": f"tea_{AGENT_ID:x}",
            "email": AGENT_EMAIL,
            "username": first.lower(),
            "first_name": first,
            "last_name": last,
            "is_admin": False,
            "is_available": True,
            "is_blocked": False,
        }

    def handle(self, n: int, role: str) -> dict[str, Any]:
        number = self.customer_number(n)
        return {
            "_links": {"related": {"contact": f"{self.url}/contacts/{self.contact_id(number)}"}},
            "name": self.customer_name(number),
            "handle": self.customer_email(number),
            "role": role,
        }

    def inbox_handle(self, role: str) -> dict[str, Any]:
        return {
            "_links": {"related": {"contact": None}},
            "name": "Support",
            "handle": "support@acme.example",
            "role": role,
        }

    def status(self, n: int) -> str:
        if n in self.trashed:
            return "deleted"
        return "archived" if self.solved(n) else "assigned"

    def conversation_json(self, n: int) -> dict[str, Any]:
        cid = self.conversation_id(n)
        return {
            "_links": {
                "self": f"{self.url}/conversations/{cid}",
                "related": {
                    "events": f"{self.url}/conversations/{cid}/events",
                    "followers": f"{self.url}/conversations/{cid}/followers",
                    "messages": f"{self.url}/conversations/{cid}/messages",
                    "comments": f"{self.url}/conversations/{cid}/comments",
                    "inboxes": f"{self.url}/conversations/{cid}/inboxes",
                },
            },
            "id": cid,
            "subject": self.subject(n),
            "status": self.status(n),
            "ticket_ids": [],
            "assignee": self.teammate(),
            "recipient": self.handle(n, "from"),
            "tags": [{"id": f"tag_{n % 6}", "name": f"topic{n % 6}", "is_private": False}],
            "links": [],
            "custom_fields": {},
            "created_at": self.created(n).timestamp(),
            "updated_at": self.updated(n).timestamp(),
            "is_private": False,
            "scheduled_reminders": [],
            "metadata": {},
        }

    def message_json(self, n: int, j: int) -> dict[str, Any]:
        """Message j as ``GET /conversations/{id}/messages`` lists it (j must not be the note)."""
        inbound = self.by_customer(j)
        body = self.comment_body(n, j)
        mid = self.message_id(n, j)
        return {
            "_links": {
                "self": f"{self.url}/messages/{mid}",
                "related": {"conversation": f"{self.url}/conversations/{self.conversation_id(n)}"},
            },
            "id": mid,
            "message_uid": f"{n:08x}{j:08x}",
            "type": "email",
            "is_inbound": inbound,
            "draft_mode": None,
            "created_at": self.message_time(n, j).timestamp(),
            "subject": self.subject(n),
            "blurb": body[:80],
            "body": f"<div>{body}</div>",
            "text": body,
            "author": None if inbound else self.teammate(),
            "recipients": [self.handle(n, "from"), self.inbox_handle("to")]
            if inbound
            else [self.inbox_handle("from"), self.handle(n, "to")],
            "attachments": [],
            "metadata": {},
        }

    def comment_json(self, n: int, j: int) -> dict[str, Any]:
        cid = self.message_id(n, j)
        return {
            "_links": {
                "self": f"{self.url}/comments/{cid}",
                "related": {
                    "conversation": f"{self.url}/conversations/{self.conversation_id(n)}",
                    "mentions": f"{self.url}/comments/{cid}/mentions",
                },
            },
            "id": cid,
            "author": self.teammate(),
            "body": self.comment_body(n, j),
            "posted_at": self.message_time(n, j).timestamp(),
            "attachments": [],
            "is_pinned": False,
        }

    def webhook_event(self, n: int, j: int) -> dict[str, Any]:
        """The rule webhook Front sends when message j of conversation n is added (full event)."""
        if self.is_note(j):
            kind, target = "comment", {"_meta": {"type": "comment"}, "data": self.comment_json(n, j)}
        else:
            kind = "inbound" if self.by_customer(j) else "out_reply"
            target = {"_meta": {"type": "message"}, "data": self.message_json(n, j)}
        last = self.message_json(n, j if not self.is_note(j) else j - 1)
        conversation = {key: value for key, value in self.conversation_json(n).items() if key != "updated_at"}
        conversation["last_message"] = last
        emitted = self.message_time(n, j).timestamp() + 0.5
        return {
            "_links": {"self": f"{self.url}/events/evt_{n:x}_{j:x}"},
            "id": f"evt_{n:x}_{j:x}",
            "type": kind,
            "emitted_at": emitted,
            "conversation": conversation,
            "source": {"_meta": {"type": "teammate"}, "data": self.teammate()}
            if kind != "inbound"
            else {"_meta": {"type": "inboxes"}, "data": []},
            "target": target,
        }

    # ------------------------------------------------------------ HTTP

    def authorized(self, headers: dict[str, str]) -> bool:
        return headers.get("authorization") == self.token

    def unauthorized(self) -> Answer:
        return 401, {"_error": {"status": 401, "title": "Unauthenticated", "message": "Invalid token"}}, {}

    def route(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Answer:
        if method != "GET":
            return 405, {"_error": {"status": 405, "title": "Method not allowed"}}, {}
        parts = path.strip("/").split("/")
        if parts == ["conversations"]:
            numbers = list(range(self.tickets, 0, -1))  # most recently updated first
            return 200, self._page(path, query, [self.conversation_json(n) for n in numbers], total=False), self._rate()
        if len(parts) == 3 and parts[:2] == ["conversations", "search"]:
            words = unquote(parts[2]).split()
            if len(words) != 1 or not words[0].startswith("after:"):
                return 400, {"_error": {"status": 400, "title": "Bad request", "message": "query"}}, {}
            after = float(words[0].removeprefix("after:"))
            numbers = [n for n in range(self.tickets, 0, -1) if self.updated(n).timestamp() > after]
            return 200, self._page(path, query, [self.conversation_json(n) for n in numbers], total=True), self._rate()
        if len(parts) == 3 and parts[0] == "conversations" and parts[2] in ("messages", "comments"):
            n = int(parts[1].removeprefix("cnv_"), 16) if parts[1].startswith("cnv_") else 0
            if not 1 <= n <= self.tickets:
                return 404, {"_error": {"status": 404, "title": "Not found", "message": "Unknown conversation"}}, {}
            if parts[2] == "messages":
                items = [self.message_json(n, j) for j in reversed(range(self.comments)) if not self.is_note(j)]
            else:
                items = [self.comment_json(n, j) for j in range(self.comments) if self.is_note(j)]
            limit = min(self.messages_page_max, int(query.get("limit", PAGE_LIMIT)))
            return 200, self._page(path, query, items, total=False, limit=limit), self._rate()
        return 404, {"_error": {"status": 404, "title": "Not found"}}, {}

    def _page(
        self, path: str, query: dict[str, str], items: list[dict[str, Any]], *, total: bool, limit: int | None = None
    ) -> dict[str, Any]:
        size = limit or min(int(query.get("limit", 50)), PAGE_LIMIT)
        offset = int(base64.urlsafe_b64decode(query["page_token"].encode())) if query.get("page_token") else 0
        end = offset + size
        following = None
        if end < len(items):
            token = base64.urlsafe_b64encode(str(end).encode()).decode()
            following = f"{self.url}{path}?{urlencode({'limit': size, 'page_token': token})}"
        page: dict[str, Any] = {
            "_pagination": {"next": following},
            "_links": {"self": f"{self.url}{path}"},
            "_results": items[offset:end],
        }
        if total:
            page["_total"] = len(items)
        return page

    def _rate(self) -> dict[str, str]:
        if self.rate_limit is None:
            return {}
        remaining = self.rate_limit - len(self.requests) % self.rate_limit
        remaining = 0 if remaining == self.rate_limit else remaining
        reset = int(time.time()) + 30  # far enough ahead that a slow client still has a wait left
        return {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset),
        }
