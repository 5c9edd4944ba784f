"""Helpdesk webhook fixtures (``fixtures/<vendor>/``, each with its provenance) and an independent re-signer."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures"
KINDS = {
    "zendesk": "zendesk",
    "intercom": "intercom",
    "helpscout": "helpscout",
    "front": "front",
    "freshdesk": "freshdesk",
    "standard-webhooks": "standard",
}


@dataclass
class Fixture:
    name: str
    kind: str
    headers: dict[str, str]
    body: bytes
    secret: str

    def signed_now(
        self, *, offset: float = 0.0, secret: str | None = None, body: bytes | None = None
    ) -> dict[str, str]:
        """Headers re-signed at now + offset with the fixture's test secret (timestamped schemes only)."""
        return resign(self.kind, self.headers, self.body if body is None else body, secret or self.secret, offset)


def load(name: str) -> Fixture:
    data = json.loads(fixture_path(name).read_text())
    signing = data.get("signing") or {}
    kind = KINDS[data["vendor"]]
    secret = signing.get("test_secret") or data["request"]["headers"].get("x-webhook-token", "")
    return Fixture(name, kind, dict(data["request"]["headers"]), data["request"]["raw_body"].encode(), secret)


def fixture_path(name: str) -> Path:
    """A fixture by file name, whichever vendor folder holds it."""
    (path,) = FIXTURES.glob(f"*/{name}")
    return path


ALL = sorted(p.name for p in FIXTURES.glob("*/*.json") if "test-vector" not in p.name)


def _b64(key: bytes, message: bytes, digest: str) -> str:
    return base64.b64encode(hmac.new(key, message, digest).digest()).decode()


def resign(kind: str, headers: dict[str, str], body: bytes, secret: str, offset: float = 0.0) -> dict[str, str]:
    now = time.time() + offset
    out = dict(headers)
    if kind == "zendesk":
        stamp = datetime.fromtimestamp(int(now), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        out["x-zendesk-webhook-signature-timestamp"] = stamp
        out["x-zendesk-webhook-signature"] = _b64(secret.encode(), stamp.encode() + body, "sha256")
    elif kind == "intercom":
        out["x-hub-signature"] = "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    elif kind == "helpscout":
        out["x-helpscout-signature"] = _b64(secret.encode(), body, "sha1")
    elif kind == "front" and "x-front-request-timestamp" in headers:
        stamp = str(int(now * 1000))
        out["x-front-request-timestamp"] = stamp
        out["x-front-signature"] = _b64(secret.encode(), stamp.encode() + b":" + body, "sha256")
    elif kind == "front":
        out["x-front-signature"] = _b64(secret.encode(), body, "sha1")
    elif kind == "standard":
        stamp = str(int(now))
        key = base64.b64decode(secret.removeprefix("whsec_"))
        signed = f"{headers['webhook-id']}.{stamp}.".encode() + body
        out["webhook-timestamp"] = stamp
        out["webhook-signature"] = "v1," + _b64(key, signed, "sha256")
    elif kind == "freshdesk":
        out["x-webhook-token"] = secret
    return out


def wsgi_headers(headers: dict[str, str]) -> dict[str, Any]:
    """Django test client keyword arguments for these HTTP headers."""
    out: dict[str, Any] = {}
    for name, value in headers.items():
        if name == "content-type":
            out["content_type"] = value
        else:
            out["HTTP_" + name.upper().replace("-", "_")] = value
    return out
