"""A loopback fake of Zendesk's history API: the cursor-based incremental ticket export, ticket comments with
side-loaded users, and the ticket count, in the shapes Zendesk documents (see ``tickets.helpdesks.zendesk``)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from tickets.helpdesk_fakes.common import AGENT_EMAIL, AGENT_ID, AGENT_NAME, EPOCH, Answer, FakeHelpdesk, iso


@dataclass
class FakeZendesk(FakeHelpdesk):
    """A Zendesk account; requesters are users ``1_000_000 + customer number``."""

    per_page_max: int = 1000
    comments_page_max: int = 100
    token: str = "Basic " + base64.b64encode(b"admin@example.com/token:secret-token").decode()

    def requester_id(self, n: int) -> int:
        return 1_000_000 + self.customer_number(n)

    def comment_id(self, n: int, j: int) -> int:
        return n * 1000 + j

    def status(self, n: int) -> str:
        return "solved" if self.solved(n) else "open"

    def ticket_json(self, n: int) -> dict[str, Any]:
        updated = self.updated(n)
        return {
            "url": f"https://example.zendesk.com/api/v2/tickets/{n}.json",
            "id": n,
            "subject": self.subject(n),
            "description": self.comment_body(n, 0),
            "status": self.status(n),
            "priority": "normal",
            "requester_id": self.requester_id(n),
            "submitter_id": self.requester_id(n),
            "assignee_id": AGENT_ID,
            "tags": ["imported", f"topic{n % 6}"],
            "via": {"channel": "email"},
            "created_at": iso(self.created(n)),
            "updated_at": iso(updated),
            "generated_timestamp": int(updated.timestamp()),
        }

    def comment_json(self, n: int, j: int) -> dict[str, Any]:
        author = self.requester_id(n) if self.by_customer(j) else AGENT_ID
        body = self.comment_body(n, j)
        return {
            "id": self.comment_id(n, j),
            "type": "Comment",
            "author_id": author,
            "body": body,
            "html_body": f'<div class="zd-comment"><p>{body}</p></div>',
            "plain_body": body,
            "public": not self.is_note(j),
            "created_at": iso(self.message_time(n, j)),
            "via": {"channel": "email"},
        }

    def user_json(self, user_id: int) -> dict[str, Any]:
        if user_id == AGENT_ID:
            return {"id": AGENT_ID, "name": AGENT_NAME, "email": AGENT_EMAIL, "role": "agent"}
        number = user_id - 1_000_000
        name, email = self.customer_name(number), self.customer_email(number)
        return {"id": user_id, "name": name, "email": email, "role": "end-user"}

    def webhook_comment_event(self, n: int, j: int) -> dict[str, Any]:
        """The event-subscribed webhook Zendesk sends when comment j of ticket n is added."""
        comment = self.comment_json(n, j)
        author = self.user_json(comment["author_id"])
        ticket = self.ticket_json(n)
        return {
            "type": "zen:event-type:ticket.comment_added",
            "id": f"evt-{n}-{j}",
            "time": comment["created_at"],
            "detail": {key: ticket[key] for key in ("id", "subject", "status", "priority", "requester_id")}
            | {"created_at": ticket["created_at"], "updated_at": comment["created_at"], "via": ticket["via"]},
            "event": {
                "comment": {
                    "id": comment["id"],
                    "body": comment["body"],
                    "is_public": comment["public"],
                    "author": {"id": author["id"], "name": author["name"], "is_staff": author["role"] != "end-user"},
                }
            },
        }

    # ------------------------------------------------------------ HTTP

    def authorized(self, headers: dict[str, str]) -> bool:
        return headers.get("authorization") == self.token

    def unauthorized(self) -> Answer:
        return 401, {"error": "Couldn't authenticate you"}, {}

    def route(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Answer:
        if path == "/api/v2/tickets/count.json":
            return 200, {"count": {"value": self.tickets, "refreshed_at": iso(EPOCH)}}, {}
        if path == "/api/v2/incremental/tickets/cursor.json":
            return 200, self._export_page(query), {}
        parts = path.strip("/").split("/")
        if len(parts) == 5 and parts[:3] == ["api", "v2", "tickets"] and parts[4] == "comments.json":
            n = int(parts[3])
            if not 1 <= n <= self.tickets:
                return 404, {"error": "RecordNotFound"}, {}
            return 200, self._comments_page(n, query, path), {}
        return 404, {"error": "InvalidEndpoint"}, {}

    def _export_page(self, query: dict[str, str]) -> dict[str, Any]:
        size = min(int(query.get("per_page", 1000)), self.per_page_max)
        if "cursor" in query:
            offset = int(base64.urlsafe_b64decode(query["cursor"].encode()).decode().split(":")[1])
        else:
            start = int(query.get("start_time", 0))
            offset = next(
                (n - 1 for n in range(1, self.tickets + 1) if self.ticket_json(n)["generated_timestamp"] >= start),
                self.tickets,
            )
        numbers = range(offset + 1, min(offset + size, self.tickets) + 1)
        end = offset + size >= self.tickets
        after = base64.urlsafe_b64encode(f"offset:{min(offset + size, self.tickets)}".encode()).decode()
        return {
            "tickets": [self.ticket_json(n) for n in numbers],
            "after_cursor": after,
            "after_url": f"https://example.zendesk.com/api/v2/incremental/tickets/cursor.json?cursor={after}",
            "before_cursor": None,
            "end_of_stream": end,
        }

    def _comments_page(self, n: int, query: dict[str, str], path: str) -> dict[str, Any]:
        size = min(int(query.get("page[size]", 100)), self.comments_page_max)
        start = int(query.get("page[after]", 0))
        indexes = range(start, min(start + size, self.comments))
        has_more = start + size < self.comments
        comments = [self.comment_json(n, j) for j in indexes]
        authors = sorted({c["author_id"] for c in comments} | {self.requester_id(n)})
        return {
            "comments": comments,
            "users": [self.user_json(a) for a in authors],
            "meta": {"has_more": has_more, "after_cursor": str(start + size) if has_more else None},
            "links": {"next": f"{self.url}{path}?include=users&page[size]={size}&page[after]={start + size}"}
            if has_more
            else {"next": None},
        }
