"""A loopback fake of Help Scout's Mailbox API 2.0 as the history reader uses it: the OAuth2 client-credentials
token endpoint (tokens that expire), the conversation list and each conversation's threads as paged HAL
documents, and the rate-limit headers, in the shapes Help Scout documents (see ``tickets.helpdesks.helpscout``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import parse_qs, urlencode

from tickets.helpdesk_fakes.common import AGENT_EMAIL, AGENT_ID, Answer, FakeHelpdesk, iso

TOKEN_PATH = "/v2/oauth2/token"
RATE_LIMIT = 400  # requests a minute (the Plus plan)


@dataclass
class FakeHelpScout(FakeHelpdesk):
    """A Help Scout account with one mailbox. Conversations are ``4_400_000 + n``, customers
    ``700_000 + customer number``; open tickets are ``active`` conversations, solved ones ``closed``.

    ``token_uses``: an access token is refused after that many requests (it expired); the reader must fetch a new
    one. ``per_page`` / ``threads_per_page``: Help Scout pages by 25; tests page by less."""

    client_id: str = "app-client-id"
    client_secret: str = "app-client-secret"
    per_page: int = 25
    threads_per_page: int = 25
    token_uses: int | None = None
    tokens: dict[str, int] = field(default_factory=dict)
    token_requests: int = 0
    refused_tokens: int = 0

    # ------------------------------------------------------------ the generated history in Help Scout's shapes

    def conversation_id(self, n: int) -> int:
        return 4_400_000 + n

    def customer_id(self, n: int) -> int:
        return 700_000 + self.customer_number(n)

    def thread_id(self, n: int, j: int) -> int:
        return self.conversation_id(n) * 100 + j

    def customer_json(self, n: int) -> dict[str, Any]:
        number = self.customer_number(n)
        first, last = self.customer_name(number).split(" ", 1)
        return {
            "id": self.customer_id(n),
            "type": "customer",
            "first": first,
            "last": last,
            "photoUrl": "https://d33v4339jhl8k0.cloudfront.net/customer-avatar/01.png",
            "email": self.customer_email(number),
        }

    def agent_json(self) -> dict[str, Any]:
        return {"id": AGENT_ID, "type": "user", "first": "Sam", "last": "Support", "email": AGENT_EMAIL}

    def conversation_json(self, n: int) -> dict[str, Any]:
        solved = self.solved(n)
        updated = iso(self.updated(n))
        conversation_id = self.conversation_id(n)
        return {
            "id": conversation_id,
            "number": 1000 + n,
            "threads": self.comments + (1 if solved else 0),
            "type": "email",
            "folderId": 1234,
            "status": "closed" if solved else "active",
            "state": "published",
            "subject": self.subject(n),
            "preview": self.comment_body(n, self.comments - 1)[:80],
            "mailboxId": 5511,
            "assignee": self.agent_json(),
            "createdBy": self.customer_json(n),
            "createdAt": iso(self.created(n)),
            "closedBy": AGENT_ID if solved else 0,
            "closedAt": updated if solved else None,
            "userUpdatedAt": updated,
            "customerWaitingSince": {"time": iso(self.created(n)), "friendly": "Jan 1"},
            "source": {"type": "email", "via": "customer"},
            "tags": [{"id": 11, "color": "#A5B2BD", "tag": "imported"}],
            "cc": [],
            "bcc": [],
            "primaryCustomer": self.customer_json(n),
            "customFields": [],
            "_links": {
                "self": {"href": f"{self.url}/v2/conversations/{conversation_id}"},
                "threads": {"href": f"{self.url}/v2/conversations/{conversation_id}/threads"},
            },
        }

    def thread_json(self, n: int, j: int) -> dict[str, Any]:
        by_customer = self.by_customer(j)
        author = self.customer_json(n) if by_customer else self.agent_json()
        return {
            "id": self.thread_id(n, j),
            "type": "customer" if by_customer else "note" if self.is_note(j) else "message",
            "status": "active",
            "state": "published",
            "action": {"type": "default", "text": "", "associatedEntities": {}},
            "body": f"<p>{escape(self.comment_body(n, j))}</p>",
            "source": {"type": "email", "via": "customer" if by_customer else "user"},
            "customer": {key: self.customer_json(n)[key] for key in ("id", "first", "last", "email")},
            "createdBy": author,
            "assignedTo": self.agent_json(),
            "savedReplyId": 0,
            "to": [],
            "cc": [],
            "bcc": [],
            "createdAt": iso(self.message_time(n, j)),
            "_embedded": {"attachments": []},
        }

    def closing_line_item(self, n: int) -> dict[str, Any]:
        """The line item Help Scout adds when an agent closes a conversation: not a message."""
        return {
            "id": self.thread_id(n, 99),
            "type": "lineitem",
            "status": "closed",
            "state": "published",
            "action": {"type": "changed-ticket-status", "text": "Sam marked as Closed", "associatedEntities": {}},
            "createdBy": self.agent_json(),
            "createdAt": iso(self.updated(n)),
        }

    def threads_newest_first(self, n: int) -> list[dict[str, Any]]:
        threads = [self.thread_json(n, j) for j in range(self.comments)]
        if self.solved(n):
            threads.append(self.closing_line_item(n))
        return sorted(threads, key=lambda t: (t["createdAt"], t["id"]), reverse=True)

    def webhook_comment_event(self, n: int, j: int) -> tuple[dict[str, str], dict[str, Any]]:
        """The headers and body Help Scout sends when thread j of conversation n is created: the conversation
        object as of then with its threads so far, newest first."""
        if j == 0:
            event = "convo.created"
        elif self.by_customer(j):
            event = "convo.customer.reply.created"
        else:
            event = "convo.note.created" if self.is_note(j) else "convo.agent.reply.created"
        conversation = self.conversation_json(n) | {
            "threads": j + 1,
            "status": "active",
            "closedBy": 0,
            "closedAt": None,
            "userUpdatedAt": iso(self.message_time(n, j)),
            "_embedded": {"threads": [self.thread_json(n, k) for k in reversed(range(j + 1))]},
        }
        return {"x-helpscout-event": event}, conversation

    # ------------------------------------------------------------ HTTP

    def open_paths(self) -> tuple[str, ...]:
        return (TOKEN_PATH,)

    def authorized(self, headers: dict[str, str]) -> bool:
        token = headers.get("authorization", "").removeprefix("Bearer ")
        with self.lock:
            if token not in self.tokens:
                return False
            if self.token_uses is not None and self.tokens[token] >= self.token_uses:
                self.refused_tokens += 1
                return False
            self.tokens[token] += 1
            return True

    def unauthorized(self) -> Answer:
        return 401, {"error": "Unauthorized", "message": "Invalid or expired access token"}, {}

    def answer(self, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> Answer:
        result = super().answer(method, target, headers, body)
        if result is None:
            return None
        status, payload, extra = result
        remaining = max(0, RATE_LIMIT - len(self.requests))
        rate = {"X-RateLimit-Limit-Minute": str(RATE_LIMIT), "X-RateLimit-Remaining-Minute": str(remaining)}
        if status == 429:
            # Help Scout names the wait in its own header, not Retry-After.
            wait = extra.get("Retry-After", "1")
            return 429, {"error": "Too many requests"}, rate | {"X-RateLimit-Retry-After": wait}
        return status, payload, extra | rate

    def route(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Answer:
        if path == TOKEN_PATH and method == "POST":
            return self._token(headers, body)
        if method != "GET":
            return 405, {"error": "Method Not Allowed"}, {}
        if path == "/v2/conversations":
            return self._conversations(query)
        parts = path.strip("/").split("/")
        if len(parts) == 4 and parts[:2] == ["v2", "conversations"] and parts[3] == "threads":
            n = int(parts[2]) - self.conversation_id(0)
            if not 1 <= n <= self.tickets:
                return 404, {"error": "Not Found"}, {}
            return 200, self._threads_page(n, int(query.get("page", 1)), path), {}
        return 404, {"error": "Not Found"}, {}

    def _token(self, headers: dict[str, str], body: bytes) -> Answer:
        if "json" in headers.get("content-type", ""):
            form = {key: str(value) for key, value in json.loads(body or b"{}").items()}
        else:
            form = {key: values[-1] for key, values in parse_qs(body.decode()).items()}
        with self.lock:
            self.token_requests += 1
            if form.get("grant_type") != "client_credentials":
                return 400, {"error": "unsupported_grant_type"}, {}
            if (form.get("client_id"), form.get("client_secret")) != (self.client_id, self.client_secret):
                return 401, {"error": "invalid_client", "error_description": "Bad client credentials"}, {}
            token = f"hs-access-{self.token_requests}"
            self.tokens[token] = 0
        return 200, {"token_type": "bearer", "access_token": token, "expires_in": 172800}, {}

    def _conversations(self, query: dict[str, str]) -> Answer:
        status = query.get("status", "active")  # Help Scout's default: open conversations only
        wanted = {"all": (True, False), "active": (False,), "closed": (True,)}.get(status, ())
        numbers = [n for n in range(1, self.tickets + 1) if self.solved(n) in wanted]
        if "modifiedSince" in query:
            since = datetime.fromisoformat(query["modifiedSince"].replace("Z", "+00:00"))
            numbers = [n for n in numbers if self.updated(n) >= since]
        by_modified = query.get("sortField", "createdAt") == "modifiedAt"
        numbers.sort(
            key=lambda n: (self.updated(n) if by_modified else self.created(n), n),
            reverse=query.get("sortOrder", "desc") == "desc",
        )
        page = int(query.get("page", 1))
        total_pages = (len(numbers) + self.per_page - 1) // self.per_page
        shown = numbers[(page - 1) * self.per_page : page * self.per_page]
        links = self._links("/v2/conversations", query, page, total_pages)
        document = {
            "_embedded": {"conversations": [self.conversation_json(n) for n in shown]},
            "_links": links,
            "page": {"size": self.per_page, "totalElements": len(numbers), "totalPages": total_pages, "number": page},
        }
        return 200, document, {}

    def _threads_page(self, n: int, page: int, path: str) -> dict[str, Any]:
        threads = self.threads_newest_first(n)
        total_pages = (len(threads) + self.threads_per_page - 1) // self.threads_per_page
        shown = threads[(page - 1) * self.threads_per_page : page * self.threads_per_page]
        return {
            "_embedded": {"threads": shown},
            "_links": self._links(path, {}, page, total_pages),
            "page": {
                "size": self.threads_per_page,
                "totalElements": len(threads),
                "totalPages": total_pages,
                "number": page,
            },
        }

    def _links(self, path: str, query: dict[str, str], page: int, total_pages: int) -> dict[str, Any]:
        """HAL links; the next page's keeps the request's own parameters (as Help Scout's have since 2019)."""

        def href(number: int) -> dict[str, str]:
            return {"href": f"{self.url}{path}?{urlencode(query | {'page': str(number)})}"}

        links: dict[str, Any] = {"self": href(page), "first": href(1), "last": href(max(total_pages, 1))}
        links["page"] = {"href": f"{self.url}{path}{{?page}}", "templated": True}
        if page < total_pages:
            links["next"] = href(page + 1)
        return links
