"""Signed Standard Webhooks deliveries for live tests and the benchmark's shape of traffic."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

WHSEC = "whsec_" + base64.b64encode(b"live-test-standard-secret-32byte").decode()


def message_event(
    n: int, *, ticket: str | None = None, role: str = "customer", text: str | None = None
) -> tuple[bytes, str]:
    """The body and delivery id of a `message.created` event from customer n."""
    body = json.dumps(
        {
            "type": "message.created",
            "timestamp": "2026-01-01T00:00:00Z",
            "data": {
                "id": ticket or f"live-{n}",
                "subject": f"Order question {n}",
                "status": "open",
                "requester": {"id": f"cust-{n}", "email": f"cust{n}@example.com", "name": f"Customer {n}"},
                "message": {"id": f"m-{n}", "body": text or f"Where is my order A-{n:05d}?", "author_role": role},
            },
        }
    ).encode()
    return body, f"msg_live_{n}_{hashlib.sha1(body).hexdigest()[:8]}"


def signed_headers(body: bytes, msg_id: str, secret: str = WHSEC) -> dict[str, str]:
    stamp = str(int(time.time()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }
