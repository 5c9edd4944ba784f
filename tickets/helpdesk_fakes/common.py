"""What every loopback helpdesk fake shares: a deterministic generated history, misbehaviour on demand, and the
HTTP server.

A vendor's fake (one module each in this package) subclasses ``FakeHelpdesk``: it renders tickets, messages and
people in its vendor's documented JSON shapes and pages them as the vendor pages them (``route``), and says which
credentials it accepts (``authorized``). The base decides *what* the history is: ticket ``n`` (1-based) always
has the same customer, subject, messages, authors and times, whatever the vendor, so the tests of every reader
check the same facts. Nothing here talks to the network.
"""

from __future__ import annotations

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
AGENT_NAME = "Sam Support"
AGENT_EMAIL = "sam@helpdesk.example"
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

# What ``answer`` returns: status, JSON body, extra headers; None drops the connection mid-body.
Answer = tuple[int, Any, dict[str, str]] | None


@dataclass
class Fault:
    """One misbehaviour, used up by the first request whose path contains ``path``."""

    path: str
    kind: str  # "429" | "500" | "drop" | "401"
    retry_after: float = 1.0


@dataclass
class Request:
    """One request as the fake saw it (for tests that check what a reader sent)."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class FakeHelpdesk:
    """A helpdesk account with ``tickets`` tickets of ``comments`` messages each, from ``customers`` customers.

    Message ``j`` of a ticket is the customer's when ``j`` is even and the agent's when odd; the last agent
    message of a ticket with more than two is an internal note. Every ``solved_every``-th ticket is open, the
    rest solved. Tickets are created an hour apart from ``EPOCH``, their messages ten minutes apart.
    """

    tickets: int = 30
    comments: int = 4
    customers: int = 10
    expire_after: int | None = None  # credentials are refused from this many requests on (an expired token)
    delay: float = 0.0  # seconds each answer takes (a slow helpdesk; gives a test time to kill an import)
    solved_every: int = 3
    faults: list[Fault] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    seen: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------ generated data (vendor-neutral)

    def customer_number(self, n: int) -> int:
        return n % self.customers

    def customer_email(self, number: int) -> str:
        return f"customer{number}@example.com"

    def customer_name(self, number: int) -> str:
        return f"Customer {number}"

    def created(self, n: int) -> datetime:
        return EPOCH + timedelta(hours=n)

    def updated(self, n: int) -> datetime:
        return self.created(n) + timedelta(minutes=10 * self.comments)

    def message_time(self, n: int, j: int) -> datetime:
        return self.created(n) + timedelta(minutes=10 * j)

    def solved(self, n: int) -> bool:
        return n % self.solved_every != 0

    def subject(self, n: int) -> str:
        return _TOPICS[n % len(_TOPICS)][0].format(order=f"A-{n:06d}")

    def by_customer(self, j: int) -> bool:
        return j % 2 == 0

    def is_note(self, j: int) -> bool:
        return j % 2 == 1 and j > 1 and j + 2 >= self.comments  # the last agent message, from the third on

    def comment_body(self, n: int, j: int) -> str:
        order = f"A-{n:06d}"
        if self.by_customer(j):
            follow_up = "Thanks, that {order} answer helps. One more thing: ticket {n} part {j}."
            template = _TOPICS[n % len(_TOPICS)][1] if j == 0 else follow_up
            email = self.customer_email(self.customer_number(n))
            return template.format(order=order, email=email, n=n, j=j)
        return _ANSWERS[(n + j) % len(_ANSWERS)].format(order=order)

    def expected_messages(self, tickets: int | None = None) -> int:
        return (tickets if tickets is not None else self.tickets) * self.comments

    # ------------------------------------------------------------ what a vendor's fake provides

    def authorized(self, headers: dict[str, str]) -> bool:
        raise NotImplementedError

    def route(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Answer:
        """The answer to an authorised request that no fault took."""
        raise NotImplementedError

    def unauthorized(self) -> Answer:
        return 401, {"error": "Unauthorized"}, {}

    def open_paths(self) -> tuple[str, ...]:
        """Paths answered without credentials (an OAuth token endpoint checks its own)."""
        return ()

    # ------------------------------------------------------------ HTTP

    def answer(self, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> Answer:
        """The status, JSON body and extra headers of one request; None means drop the connection."""
        with self.lock:
            self.requests.append(target)
            self.seen.append(Request(method, target, headers, body))
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
            return self.unauthorized()
        url = urlsplit(target)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        if url.path not in self.open_paths():
            expired = self.expire_after is not None and count > self.expire_after
            if expired or not self.authorized(headers):
                return self.unauthorized()
        return self.route(method, url.path, query, headers, body)

    def __enter__(self) -> Any:
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


def iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def serve(fake: Any, *, port: int) -> ThreadingHTTPServer:
    """An HTTP server on loopback that answers GETs and POSTs from ``fake.answer``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._reply(b"")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self._reply(self.rfile.read(length) if length else b"")

        def _reply(self, body: bytes) -> None:
            headers = {key.lower(): value for key, value in self.headers.items()}
            result = fake.answer(self.command, self.path, headers, body)
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
