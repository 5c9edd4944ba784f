"""Zendesk: webhook signature, event-subscribed and trigger payloads, replies as ticket comments."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tickets.helpdesks.base import (
    CustomerRef,
    Envelope,
    Helpdesk,
    MessageData,
    NormalisedEvent,
    OutboundRequest,
    Payload,
    PayloadError,
    SignatureError,
    api_base,
    as_dict,
    as_list,
    b64_hmac,
    body_hash,
    channel_word,
    check_fresh,
    clean,
    credential,
    digest_id,
    html_to_text,
    is_public_reply,
    json_bytes,
    need,
    priority_word,
    require_header,
    response_json,
    role_word,
    same,
    secret_bytes,
    status_word,
    ticket_external_id,
    when,
)

if TYPE_CHECKING:
    import httpx

    from tickets.models import OutboundDelivery


# ---------------------------------------------------------------- signature


def verify(headers: Mapping[str, str], body: bytes, secret: str, now: float) -> None:
    """HMAC-SHA256, base64, over the signature timestamp header followed directly by the body."""
    signature = require_header(headers, "x-zendesk-webhook-signature")
    stamp = require_header(headers, "x-zendesk-webhook-signature-timestamp")
    try:
        signed_at = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError):
        raise SignatureError("unreadable x-zendesk-webhook-signature-timestamp") from None
    check_fresh(signed_at, now)
    same(b64_hmac(secret_bytes(secret), stamp.encode() + body, "sha256"), signature)


# ---------------------------------------------------------------- payloads


def envelope_read(headers: Mapping[str, str], payload: Payload, raw: bytes) -> Envelope:
    event_type = clean(payload.get("type"))
    if event_type.startswith("zen:event-type:"):
        # Event-subscribed webhooks: a fixed schema with a unique event id.
        handled = event_type.startswith("zen:event-type:ticket.")
        return Envelope(event_type, clean(payload.get("id")) or body_hash(raw), handled)
    # Trigger/automation webhooks carry an admin-written body with no event id: the body hash is the key.
    flat = _trigger_fields(payload)
    return Envelope("zendesk.trigger", body_hash(raw), bool(flat.get("ticket_id")))


def _trigger_fields(payload: Payload) -> dict[str, Any]:
    """Trigger bodies are written by the admin: flat (``ticket_id``, ``requester_email``) or nested the way the
    placeholders read (``{"ticket": {"id": "{{ticket.id}}", "requester": {"email": ...}}}``). Both become flat."""
    ticket = as_dict(payload.get("ticket"))
    if not ticket:
        return payload
    requester = as_dict(ticket.get("requester"))
    comment = as_dict(ticket.get("latest_comment"))
    flat: dict[str, Any] = {
        "ticket_id": ticket.get("id"),
        "subject": ticket.get("title") or ticket.get("subject"),
        "status": ticket.get("status"),
        "priority": ticket.get("priority"),
        "tags": ticket.get("tags"),
        "updated_at": ticket.get("updated_at"),
        "requester_id": requester.get("id") or ticket.get("requester_id"),
        "requester_email": requester.get("email") or ticket.get("requester_email"),
        "requester_name": requester.get("name") or ticket.get("requester_name"),
        "latest_comment": comment.get("body") if comment else ticket.get("latest_comment"),
        "latest_comment_id": comment.get("id"),
        "latest_comment_author_role": as_dict(comment.get("author")).get("role") or comment.get("author_role"),
        "latest_comment_author_name": as_dict(comment.get("author")).get("name") or comment.get("author_name"),
        "latest_comment_public": comment.get("public", comment.get("is_public", "")),
    }
    return {**{k: v for k, v in payload.items() if k != "ticket"}, **{k: v for k, v in flat.items() if v is not None}}


def event_parse(event_type: str, headers: Mapping[str, str], payload: Payload) -> NormalisedEvent:
    if event_type == "zendesk.trigger":
        return _trigger(payload)
    detail = as_dict(payload.get("detail"))
    ticket_id = need(detail.get("id"), "detail.id")
    updated = when(detail.get("updated_at")) or when(payload.get("time"))
    messages = []
    if event_type.endswith("ticket.created") and clean(detail.get("description")):
        messages.append(
            MessageData(
                external_id="description",
                body=html_to_text(clean(detail.get("description"))),
                author_role="customer",
                created_at=when(detail.get("created_at")),
            )
        )
    comment = as_dict(as_dict(payload.get("event")).get("comment"))
    if comment:
        author = as_dict(comment.get("author"))
        messages.append(
            MessageData(
                external_id=need(comment.get("id"), "event.comment.id"),
                body=html_to_text(need(comment.get("body"), "event.comment.body")),
                author_role="staff" if author.get("is_staff") else "customer",
                author_name=clean(author.get("name")),
                is_public=bool(comment.get("is_public", True)),
                created_at=when(payload.get("time")),
            )
        )
    return NormalisedEvent(
        event_type=event_type,
        # Ticket events other than creation may leave the requester out (an agent assignment change): the
        # ticket is then one we know, and keeps its customer.
        customer=CustomerRef(external_id=clean(detail.get("requester_id"))) if detail.get("requester_id") else None,
        ticket_external_id=ticket_id,
        subject=clean(detail.get("subject")) or None,
        status=status_word(detail.get("status")),
        priority=priority_word(detail.get("priority")),
        channel=channel_word(as_dict(detail.get("via")).get("channel")),
        tags=[clean(tag) for tag in as_list(detail.get("tags"))] if "tags" in detail else None,
        created_at=when(detail.get("created_at")),
        updated_at=updated,
        messages=messages,
    )


def _trigger(payload: Payload) -> NormalisedEvent:
    payload = _trigger_fields(payload)
    email = clean(payload.get("requester_email")).lower()
    requester = clean(payload.get("requester_id")) or need(email, "requester_id or requester_email")
    comment = clean(payload.get("latest_comment"))
    messages = []
    if comment:
        # The template decides what is sent; without an explicit author role a comment is taken as staff's,
        # so ambiguous text never makes the agent answer a colleague.
        messages.append(
            MessageData(
                external_id=clean(payload.get("latest_comment_id")) or digest_id("comment-", comment),
                body=html_to_text(comment),
                author_role=role_word(payload.get("latest_comment_author_role"), "staff"),
                author_name=clean(payload.get("latest_comment_author_name")),
                is_public=clean(payload.get("latest_comment_public")).lower() not in {"false", "0", "no"},
            )
        )
    return NormalisedEvent(
        event_type="zendesk.trigger",
        customer=CustomerRef(external_id=requester, name=clean(payload.get("requester_name")), email=email),
        ticket_external_id=need(payload.get("ticket_id"), "ticket_id"),
        subject=clean(payload.get("subject")) or None,
        status=status_word(payload.get("status")),
        priority=priority_word(payload.get("priority")),
        tags=_tags(payload["tags"]) if "tags" in payload else None,
        updated_at=_lenient_time(payload.get("updated_at")),
        messages=messages,
    )


def _tags(value: Any) -> list[str]:
    """``{{ticket.tags}}`` renders as one space-separated string; a JSON template may send a list."""
    items = value if isinstance(value, list) else clean(value).replace(",", " ").split()
    return [clean(tag) for tag in items if clean(tag)]


def _lenient_time(value: Any) -> datetime | None:
    """Placeholders render dates in the account's display format, which is not always ISO 8601: an
    unreadable one only loses the out-of-order guard for this event, never the event."""
    try:
        return when(value)
    except PayloadError:
        return None


# ---------------------------------------------------------------- replies


def reply_request(delivery: OutboundDelivery) -> OutboundRequest:
    """``PUT /api/v2/tickets/{id}.json`` with a comment, public or internal; API token or OAuth."""
    integration = delivery.integration
    creds = integration.outbound_credentials or {}
    if creds.get("oauth_token"):
        auth = f"Bearer {creds['oauth_token']}"
    else:
        pair = f"{credential(integration, 'email')}/token:{credential(integration, 'api_token')}"
        auth = "Basic " + base64.b64encode(pair.encode()).decode()
    body = json_bytes({"ticket": {"comment": {"body": delivery.message.body, "public": is_public_reply(delivery)}}})
    url = f"{api_base(integration)}/api/v2/tickets/{ticket_external_id(delivery)}.json"
    return OutboundRequest("PUT", url, body, {"Authorization": auth})


def reply_remote_id(response: httpx.Response) -> str:
    events = as_list(as_dict(response_json(response).get("audit")).get("events"))
    return next((clean(e.get("id")) for e in events if isinstance(e, dict) and e.get("type") == "Comment"), "")


HELPDESK = Helpdesk(
    kind="zendesk",
    verify=verify,
    envelope_read=envelope_read,
    event_parse=event_parse,
    reply_request=reply_request,
    reply_remote_id=reply_remote_id,
)
