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


# The first fixtures carry the exact signed request ("request"); the rest carry a body and what must land ("expect").
ALL = sorted(p.name for p in FIXTURES.glob("*/*.json") if '"request"' in p.read_text() and "test-vector" not in p.name)
REPLAYS = sorted(p.name for p in FIXTURES.glob("*/*.json") if '"expect"' in p.read_text())
TEST_SECRETS = {
    "zendesk": "test_zendesk_signing_secret_do_not_use",
    "intercom": "test_intercom_client_secret_do_not_use",
    "helpscout": "test_helpscout_secret",
    "front": "test_front_secret",
    "freshdesk": "test_freshdesk_token",
    "standard": "whsec_" + base64.b64encode(b"fixture-replay-secret-32-bytes!!").decode(),
    "chatwoot": "test_chatwoot_webhook_secret",
    "zammad": "test_zammad_signature_token",
}


@dataclass
class Replay:
    """A fixture to replay: the vendor's body, its non-signature headers, and what must land."""

    name: str
    kind: str
    headers: dict[str, str]
    body: bytes
    secret: str
    provenance: str
    before: list[str]
    expect: dict[str, Any]

    def signed(self) -> dict[str, str]:
        return resign(self.kind, {"content-type": "application/json", **self.headers}, self.body, self.secret)


def replay_load(name: str) -> Replay:
    path = fixture_path(name)
    data = json.loads(path.read_text())
    kind = path.parent.name
    body = json.dumps(data["body"], ensure_ascii=False).encode()
    return Replay(
        name, kind, data["headers"], body, TEST_SECRETS[kind], data["provenance"], data["before"], data["expect"]
    )


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
    elif kind == "chatwoot":
        stamp = str(int(now))
        out["x-chatwoot-timestamp"] = stamp
        digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        out["x-chatwoot-signature"] = "sha256=" + digest
    elif kind == "zammad":
        out["x-hub-signature"] = "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
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
