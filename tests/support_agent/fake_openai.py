"""A scripted OpenAI-compatible chat-completions server on loopback, for driving the real openai backend.

Each POST to /v1/chat/completions that carries tools takes the next scripted reply (a completion body, or
an ``Error``); when the script runs out, ``default`` answers. Requests without tools are summary calls and
get a canned summary. Every request body is kept in ``requests``.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_ids = itertools.count(1)


@dataclass
class Error:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    message: str = "scripted error"


Reply = dict[str, Any] | Error | Callable[[dict[str, Any]], "dict[str, Any] | Error"]


def completion(message: dict[str, Any], *, prompt_tokens: int = 100, completion_tokens: int = 10) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{next(_ids)}",
        "object": "chat.completion",
        "created": 0,
        "model": "fake-model",
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def tool_calls(*calls: tuple[str, dict[str, Any] | str]) -> dict[str, Any]:
    """A completion calling these tools; arguments given as a dict are JSON-encoded, a str is sent raw."""
    encoded = [
        {
            "id": f"call_{next(_ids)}",
            "type": "function",
            "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)},
        }
        for name, args in calls
    ]
    return completion({"role": "assistant", "content": None, "tool_calls": encoded})


def text(content: str) -> dict[str, Any]:
    return completion({"role": "assistant", "content": content})


def cut(content: str) -> dict[str, Any]:
    """A completion the server cut at max_tokens: finish_reason "length"."""
    body = completion({"role": "assistant", "content": content})
    body["choices"][0]["finish_reason"] = "length"
    return body


class FakeOpenAI:
    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.default: Reply = Error(500, message="script exhausted")
        self.requests: list[dict[str, Any]] = []
        self.retry_counts: list[int] = []  # the SDK's x-stainless-retry-count of each chat request
        self.summary_requests: list[dict[str, Any]] = []
        self.delay = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def tool_requests(self) -> list[dict[str, Any]]:
        return [request for request in self.requests if request.get("tools")]

    def _next(self, body: dict[str, Any]) -> dict[str, Any] | Error:
        with self._lock:
            self.requests.append(body)
            if not body.get("tools"):
                self.summary_requests.append(body)
                return text(f"Summary {len(self.summary_requests)}: the customer discussed earlier issues.")
            reply = self.script.pop(0) if self.script else self.default
        return reply(body) if callable(reply) else reply

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with fake._lock:
                    fake.retry_counts.append(int(self.headers.get("x-stainless-retry-count", "0")))
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    if fake.delay:
                        time.sleep(fake.delay)
                    reply = fake._next(body)
                finally:
                    with fake._lock:
                        fake.in_flight -= 1
                if isinstance(reply, Error):
                    payload = json.dumps({"error": {"message": reply.message, "type": "scripted"}}).encode()
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                else:
                    payload = json.dumps(reply).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler
