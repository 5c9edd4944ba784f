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

    from tickets.helpdesks.history import HistoryReader
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
    # Attachment names, links and inline images: kept beside the text, never in it.
    attachments: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    # The vendor re-sends this message's current text under the same id (an edited description): replace ours.
    replaces: bool = False


@dataclass(frozen=True)
class NormalisedEvent:
    """``customer`` is None when the event names only the ticket (e.g. an assignment change): the ticket must
    then be known already, and keeps its customer."""

    event_type: str
    customer: CustomerRef | None
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
    # Reads the helpdesk's past tickets for the history import (tickets.imports); None: not supported yet.
    history_reader: Callable[[Integration], HistoryReader] | None = None


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


@dataclass(frozen=True)
class Extracted:
    """A message body as a person wrote it, and what it pointed at."""

    text: str
    links: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)


_PARAGRAPHS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "pre"})
_BLOCKS = frozenset({"div", "tr", "ul", "ol", "section", "article", "header", "footer", "dl", "dt", "dd"})
_VOID = frozenset({"br", "img", "hr", "meta", "link", "input", "col", "area", "base", "wbr", "source"})
_INVISIBLE = frozenset({"script", "style", "head", "title", "template"})
# Containers that mail clients and helpdesks use to mark quoted history or a signature.
_DROPPED_CLASSES = frozenset(
    {
        "gmail_quote",
        "gmail_quote_container",
        "gmail_attr",
        "gmail_signature",
        "moz-cite-prefix",
        "moz-signature",
        "yahoo_quoted",
        "protonmail_quote",
        "protonmail_signature_block",
        "front-blockquote",
        "front-signature",
        "signature",
        "zd-signature",
        "zendesk_quote",
        "intercom-quote",
        "helpscout-quote",
        "quoted",
        "quote",
        "email-quote",
        "OutlookMessageHeader",
    }
)
_DROPPED_IDS = frozenset(
    {
        "Signature",
        "signature",
        "divRplyFwdMsg",
        "appendonsend",
        "x_divRplyFwdMsg",
        "mail-editor-reference-message-container",
    }
)


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.links: list[str] = []
        self.images: list[str] = []
        self._stack: list[str] = []
        self._dropping_at: int | None = None  # stack depth where a dropped (quoted/signature/invisible) element began
        self._lists: list[list[int]] = []  # per open list: [is_ordered, counter]

    def _dropped(self, tag: str, attrs: dict[str, str]) -> bool:
        if tag in _INVISIBLE or tag == "blockquote":
            return True
        classes = set(attrs.get("class", "").split())
        if classes & _DROPPED_CLASSES or attrs.get("id", "") in _DROPPED_IDS:
            return True
        return attrs.get("data-smartmail", "") == "gmail_signature"

    def _break(self, newlines: int) -> None:
        """End the text so far with at least ``newlines`` line breaks (one per line, two per paragraph)."""
        tail = "".join(self.parts[-3:])
        have = len(tail) - len(tail.rstrip("\n")) if tail.strip() or not self.parts else newlines
        if have < newlines:
            self.parts.append("\n" * (newlines - have))

    def handle_starttag(self, tag: str, attrs_list: list[tuple[str, str | None]]) -> None:
        attrs = {name: value or "" for name, value in attrs_list}
        if tag in _VOID:
            self._void(tag, attrs)
            return
        self._stack.append(tag)
        if self._dropping_at is not None:
            return
        if self._dropped(tag, attrs):
            self._dropping_at = len(self._stack)
            return
        if tag in _PARAGRAPHS:
            self._break(2)
        elif tag in _BLOCKS:
            self._break(1)
        if tag in {"ul", "ol"}:
            self._lists.append([int(tag == "ol"), 0])
        elif tag == "li":
            marker = "- "
            if self._lists and self._lists[-1][0]:
                self._lists[-1][1] += 1
                marker = f"{self._lists[-1][1]}. "
            self._break(1)
            self.parts.append("  " * max(0, len(self._lists) - 1) + marker)
        elif tag == "a" and attrs.get("href", "").startswith(("http://", "https://", "mailto:")):
            self.links.append(attrs["href"])

    def _void(self, tag: str, attrs: dict[str, str]) -> None:
        if self._dropping_at is not None:
            return
        if tag in {"br", "hr"}:
            self.parts.append("\n")
        elif tag == "img" and attrs.get("src", "").startswith(("http://", "https://")):
            self.images.append(attrs["src"])

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID or tag not in self._stack:
            return
        while self._stack:  # close anything left open inside (sloppy HTML)
            open_tag = self._stack.pop()
            if self._dropping_at is not None and len(self._stack) < self._dropping_at:
                self._dropping_at = None
            elif self._dropping_at is None:
                if open_tag in {"ul", "ol"} and self._lists:
                    self._lists.pop()
                if open_tag in _PARAGRAPHS:
                    self._break(2)
                elif open_tag in _BLOCKS or open_tag == "li":
                    self._break(1)
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._dropping_at is None:
            # Source line breaks inside HTML are layout, not content (``<pre>`` aside, which is rare in tickets).
            text = data if "pre" in self._stack else re.sub(r"\s+", " ", data)
            self.parts.append(text)


_QUOTE_HEADER = re.compile(
    r"^(On\s.{3,300}?\swrote:|Le\s.{3,300}?\sa\s+écrit\s?:|Am\s.{3,300}?\sschrieb.{0,120}?:|El\s.{3,300}?\sescribió:"
    r"|-{2,}\s*Original Message\s*-{2,}|-{2,}\s*Forwarded message\s*-{2,}|_{10,})\s*$",
    re.IGNORECASE | re.MULTILINE | re.DOTALL,
)
_OUTLOOK_HEADER = re.compile(r"^From: .+\n(?:(?:Sent|Date|To|Cc|Subject): .*\n?){2,}", re.MULTILINE)


def strip_quoted(text: str) -> str:
    """Plain text as the person wrote it: quoted history (``On … wrote:``, ``>`` lines, forwarded or
    Outlook headers) and a ``-- `` signature are cut off; what came before them stays."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    for line in lines:
        if line.rstrip() in {"--", "-- "} and kept:
            break  # RFC 3676 signature separator
        if line.lstrip().startswith(">"):
            continue
        kept.append(line)
    body = "\n".join(kept)
    for pattern in (_QUOTE_HEADER, _OUTLOOK_HEADER):
        # A header joined onto one line by the mail client ("On Tue, … <a@b.c>\nwrote:") is caught by DOTALL.
        match = pattern.search(body)
        if match and body[: match.start()].strip():
            body = body[: match.start()]
    return _tidy(body)


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.replace("\xa0", " ").split("\n")]
    text = "\n".join(line if line.strip() else "" for line in lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# Plain text may hold "<dana@example.com>": only a real HTML tag makes a body HTML.
_HTML_TAG = re.compile(
    r"</?(?:p|div|br|span|a|b|i|u|ul|ol|li|table|tr|td|blockquote|html|body|head|img|strong|em|h[1-6]|pre|font|hr"
    r"|section|article|style|meta)\b[^>]*>",
    re.IGNORECASE,
)


def html_extract(value: str) -> Extracted:
    """Helpdesks send HTML bodies; recall memory keeps the text a person wrote, with its line breaks and lists,
    without quoted history or a marked signature. Links and inline images are kept beside it."""
    if "<" not in value or not _HTML_TAG.search(value):
        return text_extract(unescape(value))
    extractor = _TextExtractor()
    extractor.feed(value)
    extractor.close()
    lines = [line.strip(" \t") for line in "".join(extractor.parts).split("\n")]
    return Extracted(strip_quoted("\n".join(lines)), list(dict.fromkeys(extractor.links)), extractor.images)


def text_extract(value: str) -> Extracted:
    """A plain-text body (Help Scout's or Front's ``text``): only quoted history and signature come off."""
    return Extracted(strip_quoted(value))


def html_to_text(value: str) -> str:
    return html_extract(value).text


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
