"""One parser per helpdesk, each turning a verified payload into the same NormalisedEvent.

Two questions per vendor: ``envelope_read`` (at intake: which event is this, what identifies the delivery,
do we handle it) and ``event_parse`` (in the worker: customer, ticket and messages it carries). Parsers are
pure: no database, no network; ``tickets.intake`` applies what they return.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import unescape
from html.parser import HTMLParser
from typing import Any

from tickets.webhooks import body_hash

Payload = dict[str, Any]


class PayloadError(ValueError):
    """A verified payload that lacks what its event type needs: retrying will not help."""


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


# ---------------------------------------------------------------- helpers


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


def _s(value: Any) -> str:
    """A clean string: PostgreSQL text holds neither NUL nor lone surrogates, which JSON escapes can carry."""
    if value is None:
        return ""
    text = str(value).replace("\x00", "")
    return text.encode("utf-8", "replace").decode("utf-8").strip()


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _time(value: Any) -> datetime | None:
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


def _need(value: Any, what: str) -> str:
    text = _s(value)
    if not text:
        raise PayloadError(f"payload has no {what}")
    return text


def _latest(*values: datetime | None) -> datetime | None:
    present = [value for value in values if value is not None]
    return max(present) if present else None


def _first_line(text: str, limit: int = 120) -> str | None:
    line = text.strip().split("\n", 1)[0].strip()
    return (line[: limit - 1] + "…" if len(line) > limit else line) or None


def _digest_id(prefix: str, text: str) -> str:
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


def _status(value: Any) -> str | None:
    return _STATUS_WORDS.get(_s(value).lower()) if value else None


def _priority(value: Any) -> str | None:
    return _PRIORITY_WORDS.get(_s(value).lower()) if value else None


def _channel(value: Any) -> str | None:
    return _CHANNEL_WORDS.get(_s(value).lower()) if value else None


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


def _role(value: Any, default: str) -> str:
    return _ROLE_WORDS.get(_s(value).lower(), default)


# ---------------------------------------------------------------- Zendesk


def _zendesk_envelope(headers: Mapping[str, str], payload: Payload, raw: bytes) -> Envelope:
    event_type = _s(payload.get("type"))
    if event_type.startswith("zen:event-type:"):
        # Event-subscribed webhooks: a fixed schema with a unique event id.
        handled = event_type.startswith("zen:event-type:ticket.")
        return Envelope(event_type, _s(payload.get("id")) or body_hash(raw), handled)
    # Trigger/automation webhooks carry an admin-written body with no event id: the body hash is the key.
    return Envelope("zendesk.trigger", body_hash(raw), bool(payload.get("ticket_id")))


def _zendesk_parse(event_type: str, headers: Mapping[str, str], payload: Payload) -> NormalisedEvent:
    if event_type == "zendesk.trigger":
        return _zendesk_trigger(payload)
    detail = _dict(payload.get("detail"))
    ticket_id = _need(detail.get("id"), "detail.id")
    updated = _time(detail.get("updated_at")) or _time(payload.get("time"))
    messages = []
    if event_type.endswith("ticket.created") and _s(detail.get("description")):
        messages.append(
            MessageData(
                external_id="description",
                body=html_to_text(_s(detail.get("description"))),
                author_role="customer",
                created_at=_time(detail.get("created_at")),
            )
        )
    comment = _dict(_dict(payload.get("event")).get("comment"))
    if comment:
        author = _dict(comment.get("author"))
        messages.append(
            MessageData(
                external_id=_need(comment.get("id"), "event.comment.id"),
                body=html_to_text(_need(comment.get("body"), "event.comment.body")),
                author_role="staff" if author.get("is_staff") else "customer",
                author_name=_s(author.get("name")),
                is_public=bool(comment.get("is_public", True)),
                created_at=_time(payload.get("time")),
            )
        )
    return NormalisedEvent(
        event_type=event_type,
        customer=CustomerRef(external_id=_need(detail.get("requester_id"), "detail.requester_id")),
        ticket_external_id=ticket_id,
        subject=_s(detail.get("subject")) or None,
        status=_status(detail.get("status")),
        priority=_priority(detail.get("priority")),
        channel=_channel(_dict(detail.get("via")).get("channel")),
        tags=[_s(tag) for tag in _list(detail.get("tags"))] if "tags" in detail else None,
        created_at=_time(detail.get("created_at")),
        updated_at=updated,
        messages=messages,
    )


def _zendesk_trigger(payload: Payload) -> NormalisedEvent:
    email = _s(payload.get("requester_email")).lower()
    requester = _s(payload.get("requester_id")) or _need(email, "requester_id or requester_email")
    comment = _s(payload.get("latest_comment"))
    messages = []
    if comment:
        # The template decides what is sent; without an explicit author role a comment is taken as staff's,
        # so ambiguous text never makes the agent answer a colleague.
        messages.append(
            MessageData(
                external_id=_s(payload.get("latest_comment_id")) or _digest_id("comment-", comment),
                body=html_to_text(comment),
                author_role=_role(payload.get("latest_comment_author_role"), "staff"),
                author_name=_s(payload.get("latest_comment_author_name")),
                is_public=_s(payload.get("latest_comment_public")).lower() not in {"false", "0", "no"},
            )
        )
    return NormalisedEvent(
        event_type="zendesk.trigger",
        customer=CustomerRef(external_id=requester, name=_s(payload.get("requester_name")), email=email),
        ticket_external_id=_need(payload.get("ticket_id"), "ticket_id"),
        subject=_s(payload.get("subject")) or None,
        status=_status(payload.get("status")),
        priority=_priority(payload.get("priority")),
        updated_at=_time(payload.get("updated_at")),
        messages=messages,
    )


# ---------------------------------------------------------------- Intercom


def _intercom_envelope(headers: Mapping[str, str], payload: Payload, raw: bytes) -> Envelope:
    topic = _s(payload.get("topic"))
    item = _dict(_dict(payload.get("data")).get("item"))
    handled = topic.startswith("conversation.") and item.get("type") == "conversation"
    return Envelope(topic, _s(payload.get("id")) or body_hash(raw), handled)


def _intercom_message(part: dict[str, Any], fallback_time: Any) -> MessageData | None:
    author = _dict(part.get("author"))
    body = html_to_text(_s(part.get("body")))
    if not body or part.get("redacted"):
        return None
    part_type = _s(part.get("part_type"))
    return MessageData(
        external_id=_need(part.get("id"), "conversation part id"),
        body=body,
        author_role="system" if author.get("type") == "bot" else _role(author.get("type"), "staff"),
        author_name=_s(author.get("name")),
        is_public=part_type != "note",
        created_at=_time(part.get("created_at") or fallback_time),
    )


def _intercom_parse(event_type: str, headers: Mapping[str, str], payload: Payload) -> NormalisedEvent:
    item = _dict(_dict(payload.get("data")).get("item"))
    source = _dict(item.get("source"))
    author = _dict(source.get("author"))
    contacts = _list(_dict(item.get("contacts")).get("contacts"))
    contact_id = _s(_dict(contacts[0]).get("id")) if contacts else ""
    is_person = _role(author.get("type"), "staff") == "customer"
    customer = CustomerRef(
        external_id=contact_id or _need(author.get("id") if is_person else "", "contacts[0].id"),
        name=_s(author.get("name")) if is_person else "",
        email=_s(author.get("email")).lower() if is_person else "",
    )
    parts = [source, *_list(_dict(item.get("conversation_parts")).get("conversation_parts"))]
    messages = [m for m in (_intercom_message(_dict(p), item.get("created_at")) for p in parts) if m]
    state = _s(item.get("state")) or ("open" if item.get("open") else "closed")
    return NormalisedEvent(
        event_type=event_type,
        customer=customer,
        ticket_external_id=_need(item.get("id"), "data.item.id"),
        # Chats have no subject: the opening message's first line stands in for one.
        subject=html_to_text(_s(source.get("subject"))) or _first_line(html_to_text(_s(source.get("body")))),
        status=_status(state),
        priority="high" if item.get("priority") == "priority" else None,
        channel="chat",
        tags=[_s(_dict(t).get("name")) for t in _list(_dict(item.get("tags")).get("tags"))],
        created_at=_time(item.get("created_at")),
        updated_at=_time(item.get("updated_at")),
        messages=messages,
    )


# ---------------------------------------------------------------- Help Scout

_HELPSCOUT_ROLES = {"customer": "customer", "message": "staff", "note": "staff", "chat": "customer", "phone": "staff"}


def _helpscout_envelope(headers: Mapping[str, str], payload: Payload, raw: bytes) -> Envelope:
    event_type = _s(headers.get("x-helpscout-event"))
    handled = event_type.startswith("convo.") and event_type not in {"convo.deleted", "convo.merged"}
    # No delivery id: the event name plus the body identifies a delivery (retries resend the same bytes).
    return Envelope(event_type, body_hash(event_type.encode() + b"\n" + raw), handled)


def _helpscout_thread(thread: dict[str, Any]) -> MessageData | None:
    kind = _s(thread.get("type"))
    body = html_to_text(_s(thread.get("body")))
    if kind not in _HELPSCOUT_ROLES or not body:
        return None  # line items (status changes, assignments) are not messages
    author = _dict(thread.get("createdBy"))
    return MessageData(
        external_id=_need(thread.get("id"), "thread id"),
        body=body,
        author_role=_HELPSCOUT_ROLES[kind],
        author_name=" ".join(filter(None, [_s(author.get("first")), _s(author.get("last"))])),
        is_public=kind != "note",
        created_at=_time(thread.get("createdAt")),
    )


def _helpscout_parse(event_type: str, headers: Mapping[str, str], payload: Payload) -> NormalisedEvent:
    person = _dict(payload.get("primaryCustomer")) or _dict(payload.get("customer"))
    threads = _list(_dict(payload.get("_embedded")).get("threads"))
    # Threads arrive newest first; recall memory wants them in the order they were written.
    messages = [m for m in (_helpscout_thread(_dict(t)) for t in reversed(threads)) if m]
    newest = _latest(*(m.created_at for m in messages))
    return NormalisedEvent(
        event_type=event_type,
        customer=CustomerRef(
            external_id=_need(person.get("id"), "primaryCustomer.id"),
            name=" ".join(filter(None, [_s(person.get("first")), _s(person.get("last"))])),
            email=_s(person.get("email")).lower(),
        ),
        ticket_external_id=_need(payload.get("id"), "id"),
        subject=_s(payload.get("subject")) or None,
        status=_status(payload.get("status")),
        channel=_channel(_dict(payload.get("source")).get("type") or payload.get("type")),
        tags=[_s(_dict(t).get("tag")) for t in _list(payload.get("tags"))] if "tags" in payload else None,
        created_at=_time(payload.get("createdAt")),
        updated_at=_latest(_time(payload.get("userUpdatedAt")), newest),
        messages=messages,
    )


# ---------------------------------------------------------------- Front

_FRONT_HANDLED = {"inbound", "outbound", "out_reply", "comment", "archive", "reopen", "assign", "unassign", "tag"}


def _front_event(payload: Payload) -> Payload:
    """Rule webhooks send the event itself; application webhooks wrap it as ``{type, authorization, payload}``."""
    inner = payload.get("payload")
    return inner if isinstance(inner, dict) else payload


def _front_envelope(headers: Mapping[str, str], payload: Payload, raw: bytes) -> Envelope:
    event = _front_event(payload)
    event_type = _s(event.get("type"))
    return Envelope(event_type, _s(event.get("id")) or body_hash(raw), event_type in _FRONT_HANDLED)


def _front_contact(conversation: dict[str, Any]) -> CustomerRef:
    recipient = _dict(conversation.get("recipient"))
    handle = _need(recipient.get("handle"), "conversation.recipient.handle")
    contact_url = _s(_dict(_dict(recipient.get("_links")).get("related")).get("contact"))
    return CustomerRef(
        external_id=contact_url.rsplit("/", 1)[-1] if contact_url else handle,
        email=handle.lower() if "@" in handle else "",
    )


def _front_message(target: dict[str, Any], is_comment: bool) -> MessageData | None:
    text = _s(target.get("text")) or html_to_text(_s(target.get("body")))
    if not text:
        return None
    author = _dict(target.get("author"))
    author_name = " ".join(filter(None, [_s(author.get("first_name")), _s(author.get("last_name"))]))
    inbound = bool(target.get("is_inbound")) and not is_comment
    return MessageData(
        external_id=_need(target.get("id"), "message id"),
        body=text.strip(),
        author_role="customer" if inbound else "staff",
        author_name=author_name or _s(author.get("username")),
        is_public=not is_comment,
        created_at=_time(target.get("created_at") or target.get("posted_at")),
    )


def _front_parse(event_type: str, headers: Mapping[str, str], payload: Payload) -> NormalisedEvent:
    event = _front_event(payload)
    conversation = _dict(event.get("conversation"))
    target = _dict(event.get("target"))
    target_type = _s(_dict(target.get("_meta")).get("type"))
    data = _dict(target.get("data"))
    messages = []
    if target_type in {"message", "comment"} and data:
        message = _front_message(data, is_comment=target_type == "comment")
        messages = [message] if message else []
    return NormalisedEvent(
        event_type=event_type,
        customer=_front_contact(conversation),
        ticket_external_id=_need(conversation.get("id"), "conversation.id"),
        subject=_s(conversation.get("subject")) or None,
        status=_status(conversation.get("status")),
        channel=_channel(_dict(conversation.get("last_message")).get("type")),
        tags=[_s(_dict(t).get("name")) for t in _list(conversation.get("tags"))] if "tags" in conversation else None,
        created_at=_time(conversation.get("created_at")),
        updated_at=_time(event.get("emitted_at")),
        messages=messages,
    )


# ---------------------------------------------------------------- Freshdesk


def _freshdesk_envelope(headers: Mapping[str, str], payload: Payload, raw: bytes) -> Envelope:
    hook = _dict(payload.get("freshdesk_webhook"))
    event_type = _s(hook.get("triggered_event")).strip("{}") or "ticket.updated"
    return Envelope(event_type, body_hash(raw), bool(hook.get("ticket_id")))


def _freshdesk_parse(event_type: str, headers: Mapping[str, str], payload: Payload) -> NormalisedEvent:
    hook = _dict(payload.get("freshdesk_webhook"))
    ticket_id = _need(hook.get("ticket_id"), "freshdesk_webhook.ticket_id")
    email = _s(hook.get("requester_email")).lower()
    messages = []
    description = html_to_text(_s(hook.get("ticket_description")))
    if description:
        messages.append(MessageData(external_id="description", body=description, author_role="customer"))
    comment = html_to_text(_s(hook.get("ticket_latest_public_comment")))
    if comment:
        messages.append(
            MessageData(
                external_id=_s(hook.get("comment_id")) or _digest_id("comment-", comment),
                body=comment,
                author_role=_role(hook.get("comment_author_role"), "staff"),
            )
        )
    return NormalisedEvent(
        event_type=event_type,
        customer=CustomerRef(
            external_id=_s(hook.get("requester_id")) or _need(email, "requester_id or requester_email"),
            name=_s(hook.get("requester_name")),
            email=email,
        ),
        ticket_external_id=ticket_id,
        subject=_s(hook.get("ticket_subject")) or None,
        status=_status(hook.get("ticket_status")),
        priority=_priority(hook.get("ticket_priority")),
        tags=[t.strip() for t in _s(hook.get("ticket_tags")).split(",") if t.strip()] or None,
        updated_at=_time(hook.get("ticket_updated_at")),
        messages=messages,
    )


# ---------------------------------------------------------------- Standard Webhooks (generic)


def _standard_envelope(headers: Mapping[str, str], payload: Payload, raw: bytes) -> Envelope:
    event_type = _s(payload.get("type"))
    delivery = _s(headers.get("webhook-id") or headers.get("svix-id")) or body_hash(raw)
    return Envelope(event_type, delivery, event_type.startswith(("ticket.", "message.")))


def _standard_parse(event_type: str, headers: Mapping[str, str], payload: Payload) -> NormalisedEvent:
    data = _dict(payload.get("data"))
    ticket = _dict(data.get("ticket")) or data
    requester = _dict(ticket.get("requester")) or _dict(data.get("requester"))
    email = _s(requester.get("email")).lower()
    messages = []
    raw_message = _dict(data.get("message"))
    if raw_message:
        messages.append(
            MessageData(
                external_id=_need(raw_message.get("id"), "data.message.id"),
                body=html_to_text(_need(raw_message.get("body"), "data.message.body")),
                author_role=_role(raw_message.get("author_role"), "customer"),
                author_name=_s(raw_message.get("author_name")),
                is_public=raw_message.get("public", True) is not False,
                created_at=_time(raw_message.get("created_at")),
            )
        )
    return NormalisedEvent(
        event_type=event_type,
        customer=CustomerRef(
            external_id=_s(requester.get("id")) or _need(email, "requester.id or requester.email"),
            name=_s(requester.get("name")),
            email=email,
        ),
        ticket_external_id=_need(ticket.get("id"), "data.id"),
        subject=_s(ticket.get("subject")) or None,
        status=_status(ticket.get("status")),
        priority=_priority(ticket.get("priority")),
        channel=_channel(ticket.get("channel")),
        tags=[_s(t) for t in _list(ticket.get("tags"))] if "tags" in ticket else None,
        created_at=_time(ticket.get("created_at")),
        updated_at=_time(ticket.get("updated_at") or payload.get("timestamp")),
        messages=messages,
    )


# ---------------------------------------------------------------- registry

EnvelopeReader = Callable[[Mapping[str, str], Payload, bytes], Envelope]
Parser = Callable[[str, Mapping[str, str], Payload], NormalisedEvent]

PARSERS: dict[str, tuple[EnvelopeReader, Parser]] = {
    "zendesk": (_zendesk_envelope, _zendesk_parse),
    "intercom": (_intercom_envelope, _intercom_parse),
    "helpscout": (_helpscout_envelope, _helpscout_parse),
    "front": (_front_envelope, _front_parse),
    "freshdesk": (_freshdesk_envelope, _freshdesk_parse),
    "standard": (_standard_envelope, _standard_parse),
}


def envelope_read(*, kind: str, headers: Mapping[str, str], payload: Any, raw_body: bytes) -> Envelope:
    """Event type, delivery key and whether we handle it. A non-object JSON body is an unhandled event."""
    if not isinstance(payload, dict):
        return Envelope("", body_hash(raw_body), False)
    return PARSERS[kind][0](headers, payload, raw_body)


def event_parse(*, kind: str, event_type: str, headers: Mapping[str, str], payload: Payload) -> NormalisedEvent:
    """The normalised event; PayloadError when the payload lacks something its event type needs."""
    try:
        return PARSERS[kind][1](event_type, headers, payload)
    except (TypeError, AttributeError, KeyError) as exc:
        raise PayloadError(f"unexpected payload shape: {exc}") from exc
