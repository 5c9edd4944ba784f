"""Loopback fakes of helpdesk history APIs, for the import tests and ``import_benchmark``.

Each fake serves a deterministic generated history (ticket ``n`` always has the same customer, comments and
times) in the vendor's documented response shapes, with cursors and page sizes as the vendor pages them, and
can be told to misbehave: answer 429 with ``Retry-After``, answer 500, drop the connection mid-body, or reject
the token from some request on (an expired token). Nothing here talks to the network.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
AGENT_ID = 9_000_001
_TOPICS = [
    ("Refund for order {order}", "I was charged twice for order {order}, please refund one of the charges."),
    ("Cannot log in", "Since yesterday the login page says my password is wrong for {email}."),
    ("Shipping delay", "Order {order} was due on Monday and the tracking page has not moved."),
    ("Invoice address", "Please change the billing address on invoice {order} to our new office in Leeds."),
    ("Export to CSV", "The CSV export of my reports stops at 1,000 rows, I need all of them."),
    ("Dark mode request", "Would love a dark mode in the mobile app, my eyes hurt at night."),
]
_ANSWERS = [
    "Thanks for writing in. I have looked into {order} and issued the fix; you should see it within a day.",
    "Could you send a screenshot of what you see? That helps us reproduce it.",
    "All sorted on our side now: the change is live on your account.",
    "I have passed this to the product team and linked your account to the request.",
]


@dataclass
class Fault:
    """One misbehaviour, used up by the first request whose path contains ``path``."""

    path: str
    kind: str  # "429" | "500" | "drop" | "401"
    retry_after: float = 1.0


@dataclass
class FakeZendesk:
    """A Zendesk account with ``tickets`` tickets of ``comments`` comments each, ``customers`` requesters."""

    tickets: int = 30
    comments: int = 4
    customers: int = 10
    per_page_max: int = 1000
    comments_page_max: int = 100
    token: str = "Basic " + base64.b64encode(b"admin@example.com/token:secret-token").decode()
    expire_after: int | None = None  # the token is refused from this many requests on
    delay: float = 0.0  # seconds each answer takes (a slow helpdesk; gives a test time to kill an import)
    solved_every: int = 3  # every ticket but each solved_every-th is solved
    faults: list[Fault] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------ generated data

    def requester_id(self, n: int) -> int:
        return 1_000_000 + n % self.customers

    def customer_email(self, customer_id: int) -> str:
        return f"customer{customer_id - 1_000_000}@example.com"

    def created(self, n: int) -> datetime:
        return EPOCH + timedelta(hours=n)

    def comment_id(self, n: int, j: int) -> int:
        return n * 1000 + j

    def status(self, n: int) -> str:
        return "open" if n % self.solved_every == 0 else "solved"

    def subject(self, n: int) -> str:
        return _TOPICS[n % len(_TOPICS)][0].format(order=f"A-{n:06d}")

    def comment_body(self, n: int, j: int) -> str:
        order = f"A-{n:06d}"
        if j % 2 == 0:
            follow_up = "Thanks, that {order} answer helps. One more thing: ticket {n} part {j}."
            template = _TOPICS[n % len(_TOPICS)][1] if j == 0 else follow_up
            return template.format(order=order, email=self.customer_email(self.requester_id(n)), n=n, j=j)
        return _ANSWERS[(n + j) % len(_ANSWERS)].format(order=order)

    def ticket_json(self, n: int) -> dict[str, Any]:
        updated = self.created(n) + timedelta(minutes=10 * self.comments)
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
            "tags": ["imported", f"topic{n % len(_TOPICS)}"],
            "via": {"channel": "email"},
            "created_at": _iso(self.created(n)),
            "updated_at": _iso(updated),
            "generated_timestamp": int(updated.timestamp()),
        }

    def comment_json(self, n: int, j: int) -> dict[str, Any]:
        author = self.requester_id(n) if j % 2 == 0 else AGENT_ID
        body = self.comment_body(n, j)
        return {
            "id": self.comment_id(n, j),
            "type": "Comment",
            "author_id": author,
            "body": body,
            "html_body": f'<div class="zd-comment"><p>{body}</p></div>',
            "plain_body": body,
            "public": not (j % 2 == 1 and j == self.comments - 1 and j > 1),  # the last agent comment is a note
            "created_at": _iso(self.created(n) + timedelta(minutes=10 * j)),
            "via": {"channel": "email"},
        }

    def user_json(self, user_id: int) -> dict[str, Any]:
        if user_id == AGENT_ID:
            return {"id": AGENT_ID, "name": "Sam Support", "email": "sam@helpdesk.example", "role": "agent"}
        number = user_id - 1_000_000
        return {"id": user_id, "name": f"Customer {number}", "email": self.customer_email(user_id), "role": "end-user"}

    def expected_messages(self, tickets: int | None = None) -> int:
        return (tickets if tickets is not None else self.tickets) * self.comments

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

    def answer(self, method: str, target: str, headers: dict[str, str]) -> tuple[int, Any, dict[str, str]] | None:
        """The status, JSON body and extra headers of one request; None means drop the connection."""
        with self.lock:
            self.requests.append(target)
            count = len(self.requests)
            fault = next((f for f in self.faults if f.path in target), None)
            if fault is not None:
                self.faults.remove(fault)
        if self.delay:
            time.sleep(self.delay)
        if fault is not None:
            if fault.kind == "drop":
                return None
            if fault.kind == "429":
                return 429, {"error": "TooManyRequests"}, {"Retry-After": str(fault.retry_after)}
            if fault.kind == "500":
                return 500, {"error": "InternalError"}, {}
            return 401, {"error": "Couldn't authenticate you"}, {}
        expired = self.expire_after is not None and count > self.expire_after
        if headers.get("authorization") != self.token or expired:
            return 401, {"error": "Couldn't authenticate you"}, {}
        url = urlsplit(target)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        if url.path == "/api/v2/tickets/count.json":
            return 200, {"count": {"value": self.tickets, "refreshed_at": _iso(EPOCH)}}, {}
        if url.path == "/api/v2/incremental/tickets/cursor.json":
            return 200, self._export_page(query), {}
        parts = url.path.strip("/").split("/")
        if len(parts) == 5 and parts[:3] == ["api", "v2", "tickets"] and parts[4] == "comments.json":
            n = int(parts[3])
            if not 1 <= n <= self.tickets:
                return 404, {"error": "RecordNotFound"}, {}
            return 200, self._comments_page(n, query, url.path), {}
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

    def __enter__(self) -> FakeZendesk:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.server = serve(self, port=0)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def serve(fake: Any, *, port: int) -> ThreadingHTTPServer:
    """An HTTP server on loopback that answers GETs from ``fake.answer``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            headers = {key.lower(): value for key, value in self.headers.items()}
            result = fake.answer("GET", self.path, headers)
            if result is None:
                # Promise a long body, send a few bytes, hang up: the client sees a dropped connection.
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
                self.wfile.write(b'Content-Length: 5000\r\n\r\n{"ti')
                self.wfile.flush()
                self.close_connection = True
                return
            status, payload, extra = result
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    return server
