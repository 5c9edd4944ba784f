"""What every helpdesk module shares: the normalised event, the signature and outbound building blocks, and
small payload readers. Vendor knowledge lives in the vendor's own module, never here.

Parsers are pure (no database, no network); ``tickets.intake`` applies what they return.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import unescape
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from tickets.models import Integration, OutboundDelivery

Payload = dict[str, Any]
TOLERANCE_SECONDS = 5 * 60


class SignatureError(Exception):
    """The request is not authentic: missing or bad signature, stale timestamp, wrong token."""


class PayloadError(ValueError):
    """A verified payload that lacks what its event type needs: retrying will not help."""


class OutboundConfigError(Exception):
    """The integration cannot send this reply as configured (no URL, no credentials, no ticket id)."""


@dataclass(frozen=True)
class Envelope:
    event_type: str
    delivery_key: str
    handled: bool


@dataclass(frozen=True)
class CustomerRef:
    external_id: str
    name: str = ""
    email: str = ""


@dataclass(frozen=True)
class MessageData:
    external_id: str
    body: str
    author_role: str  # customer | staff | system
    author_name: str = ""
    is_public: bool = True
    created_at: datetime | None = None


@dataclass(frozen=True)
class NormalisedEvent:
    event_type: str
    customer: CustomerRef
    ticket_external_id: str
    subject: str | None = None
    status: str | None = None
    priority: str | None = None
    channel: str | None = None
    tags: list[str] | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    messages: list[MessageData] = field(default_factory=list)


@dataclass(frozen=True)
class OutboundRequest:
    method: str
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


Verifier = Callable[[Mapping[str, str], bytes, str, float], None]
EnvelopeReader = Callable[[Mapping[str, str], Payload, bytes], Envelope]
Parser = Callable[[str, Mapping[str, str], Payload], NormalisedEvent]
ReplyBuilder = Callable[["OutboundDelivery"], OutboundRequest]
RemoteIdReader = Callable[["httpx.Response"], str]


def no_remote_id(response: httpx.Response) -> str:
    return ""


@dataclass(frozen=True)
class Helpdesk:
    """One helpdesk: how it signs, what it sends, how a reply goes back. Registered in ``tickets.helpdesks``."""

    kind: str
    verify: Verifier
    envelope_read: EnvelopeReader
    event_parse: Parser
    reply_request: ReplyBuilder
    reply_remote_id: RemoteIdReader = no_remote_id


# ---------------------------------------------------------------- signatures


def body_hash(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def b64_hmac(key: bytes, message: bytes, digest: str) -> str:
    return base64.b64encode(hmac.new(key, message, digest).digest()).decode()


def require_header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name, "").strip()
    if not value:
        raise SignatureError(f"missing {name} header")
    return value


def check_fresh(timestamp: float, now: float) -> None:
    try:
        stale = abs(now - timestamp) > TOLERANCE_SECONDS
    except OverflowError:  # an absurd timestamp (say, 400 digits) is as stale as they come
        stale = True
    if stale:
        raise SignatureError("timestamp outside the 5-minute tolerance")


def same(expected: str, given: str) -> None:
    """Constant-time comparison: timing must not reveal how much of a forged signature was right."""
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise SignatureError("signature does not match")


def secret_bytes(secret: str) -> bytes:
    if not secret:
        raise SignatureError("the integration has no signing secret configured")
    return secret.encode()


# ---------------------------------------------------------------- payload readers


class _TextExtractor(HTMLParser):
    _BREAKS = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "blockquote"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(value: str) -> str:
    """Helpdesks send HTML bodies; recall memory keeps plain text."""
    if "<" not in value:
        return unescape(value).strip()
    extractor = _TextExtractor()
    extractor.feed(value)
    extractor.close()
    return re.sub(r"\n{3,}", "\n\n", "".join(extractor.parts)).strip()


def clean(value: Any) -> str:
    """A clean string: PostgreSQL text holds neither NUL nor lone surrogates, which JSON escapes can carry."""
    if value is None:
        return ""
    text = str(value).replace("\x00", "")
    return text.encode("utf-8", "replace").decode("utf-8").strip()


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def when(value: Any) -> datetime | None:
    """ISO 8601 strings and epoch seconds (Intercom, Front) both occur."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(float(value), tz=UTC)
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise PayloadError(f"unreadable time {str(value)[:40]!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def need(value: Any, what: str) -> str:
    text = clean(value)
    if not text:
        raise PayloadError(f"payload has no {what}")
    return text


def latest(*values: datetime | None) -> datetime | None:
    present = [value for value in values if value is not None]
    return max(present) if present else None


def first_line(text: str, limit: int = 120) -> str | None:
    line = text.strip().split("\n", 1)[0].strip()
    return (line[: limit - 1] + "…" if len(line) > limit else line) or None


def digest_id(prefix: str, text: str) -> str:
    """A stable external id for a message the vendor gives no id for (same text, same id)."""
    return prefix + hashlib.sha256(text.encode()).hexdigest()[:24]


_STATUS_WORDS = {
    "new": "new",
    "open": "open",
    "opened": "open",
    "active": "open",
    "unassigned": "open",
    "assigned": "open",
    "pending": "pending",
    "snoozed": "pending",
    "waiting on customer": "pending",
    "waiting on third party": "pending",
    "hold": "on_hold",
    "on_hold": "on_hold",
    "on-hold": "on_hold",
    "solved": "solved",
    "resolved": "solved",
    "closed": "closed",
    "archived": "solved",
    "spam": "closed",
    "deleted": "closed",
}
_PRIORITY_WORDS = {"low": "low", "normal": "normal", "medium": "normal", "high": "high", "urgent": "urgent"}
_CHANNEL_WORDS = {
    "email": "email",
    "mail": "email",
    "web_widget": "widget",
    "widget": "widget",
    "messaging": "chat",
    "native_messaging": "chat",
    "chat": "chat",
    "voice": "phone",
    "phone": "phone",
    "web": "web",
    "web_form": "web",
    "api": "api",
    "twitter": "social",
    "facebook": "social",
    "whatsapp": "social",
}
_ROLE_WORDS = {
    "customer": "customer",
    "end-user": "customer",
    "end_user": "customer",
    "user": "customer",
    "lead": "customer",
    "contact": "customer",
    "requester": "customer",
    "agent": "staff",
    "admin": "staff",
    "staff": "staff",
}


def status_word(value: Any) -> str | None:
    return _STATUS_WORDS.get(clean(value).lower()) if value else None


def priority_word(value: Any) -> str | None:
    return _PRIORITY_WORDS.get(clean(value).lower()) if value else None


def channel_word(value: Any) -> str | None:
    return _CHANNEL_WORDS.get(clean(value).lower()) if value else None


def role_word(value: Any, default: str) -> str:
    return _ROLE_WORDS.get(clean(value).lower(), default)


# ---------------------------------------------------------------- outbound building blocks


def json_bytes(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def credential(integration: Integration, name: str) -> str:
    value = str((integration.outbound_credentials or {}).get(name) or "")
    if not value:
        raise OutboundConfigError(f"{integration.kind} outbound needs credential {name!r}")
    return value


def api_base(integration: Integration, default: str = "") -> str:
    base = integration.outbound_base_url or default
    if not base:
        raise OutboundConfigError(f"{integration.kind} outbound needs outbound_base_url")
    return base.rstrip("/")


def ticket_external_id(delivery: OutboundDelivery) -> str:
    ticket = delivery.message.ticket
    if ticket is None or not ticket.external_id:
        raise OutboundConfigError("the reply's ticket has no helpdesk id")
    return ticket.external_id


def bearer(integration: Integration, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential(integration, name)}"}


def is_public_reply(delivery: OutboundDelivery) -> bool:
    return delivery.reply_mode == "public"


def response_json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
