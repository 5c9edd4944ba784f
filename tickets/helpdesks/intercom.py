"""Intercom: ``X-Hub-Signature``, conversation notifications, replies and notes through the REST API."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tickets.helpdesks.base import (
    CustomerRef,
    Envelope,
    Helpdesk,
    MessageData,
    NormalisedEvent,
    OutboundRequest,
    Payload,
    api_base,
    as_dict,
    as_list,
    bearer,
    body_hash,
    clean,
    credential,
    first_line,
    html_to_text,
    is_public_reply,
    json_bytes,
    need,
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
    """HMAC-SHA1 with the app's client secret, hex, in ``X-Hub-Signature: sha1=<hex>``. No timestamp."""
    signature = require_header(headers, "x-hub-signature")
    same("sha1=" + hmac.new(secret_bytes(secret), body, "sha1").hexdigest(), signature.lower())


# ---------------------------------------------------------------- payloads


def envelope_read(headers: Mapping[str, str], payload: Payload, raw: bytes) -> Envelope:
    topic = clean(payload.get("topic"))
    item = as_dict(as_dict(payload.get("data")).get("item"))
    handled = topic.startswith("conversation.") and item.get("type") == "conversation"
    return Envelope(topic, clean(payload.get("id")) or body_hash(raw), handled)


def _message(part: dict[str, Any], fallback_time: Any) -> MessageData | None:
    author = as_dict(part.get("author"))
    body = html_to_text(clean(part.get("body")))
    if not body or part.get("redacted"):
        return None
    part_type = clean(part.get("part_type"))
    return MessageData(
        external_id=need(part.get("id"), "conversation part id"),
        body=body,
        author_role="system" if author.get("type") == "bot" else role_word(author.get("type"), "staff"),
        author_name=clean(author.get("name")),
        is_public=part_type != "note",
        created_at=when(part.get("created_at") or fallback_time),
    )


def event_parse(event_type: str, headers: Mapping[str, str], payload: Payload) -> NormalisedEvent:
    item = as_dict(as_dict(payload.get("data")).get("item"))
    source = as_dict(item.get("source"))
    author = as_dict(source.get("author"))
    contacts = as_list(as_dict(item.get("contacts")).get("contacts"))
    contact_id = clean(as_dict(contacts[0]).get("id")) if contacts else ""
    is_person = role_word(author.get("type"), "staff") == "customer"
    customer = CustomerRef(
        external_id=contact_id or need(author.get("id") if is_person else "", "contacts[0].id"),
        name=clean(author.get("name")) if is_person else "",
        email=clean(author.get("email")).lower() if is_person else "",
    )
    parts = [source, *as_list(as_dict(item.get("conversation_parts")).get("conversation_parts"))]
    messages = [m for m in (_message(as_dict(p), item.get("created_at")) for p in parts) if m]
    state = clean(item.get("state")) or ("open" if item.get("open") else "closed")
    return NormalisedEvent(
        event_type=event_type,
        customer=customer,
        ticket_external_id=need(item.get("id"), "data.item.id"),
        # Chats have no subject: the opening message's first line stands in for one.
        subject=html_to_text(clean(source.get("subject"))) or first_line(html_to_text(clean(source.get("body")))),
        status=status_word(state),
        priority="high" if item.get("priority") == "priority" else None,
        channel="chat",
        tags=[clean(as_dict(t).get("name")) for t in as_list(as_dict(item.get("tags")).get("tags"))],
        created_at=when(item.get("created_at")),
        updated_at=when(item.get("updated_at")),
        messages=messages,
    )


# ---------------------------------------------------------------- replies

API_BASE = "https://api.intercom.io"


def reply_request(delivery: OutboundDelivery) -> OutboundRequest:
    """``POST /conversations/{id}/reply`` as an admin: a comment (public) or a note."""
    integration = delivery.integration
    body = json_bytes(
        {
            "message_type": "comment" if is_public_reply(delivery) else "note",
            "type": "admin",
            "admin_id": credential(integration, "admin_id"),
            "body": delivery.message.body,
        }
    )
    headers = {**bearer(integration, "access_token"), "Intercom-Version": "2.11"}
    url = f"{api_base(integration, API_BASE)}/conversations/{ticket_external_id(delivery)}/reply"
    return OutboundRequest("POST", url, body, headers)


def reply_remote_id(response: httpx.Response) -> str:
    parts = as_list(as_dict(response_json(response).get("conversation_parts")).get("conversation_parts"))
    return clean(parts[-1].get("id")) if parts and isinstance(parts[-1], dict) else ""


HELPDESK = Helpdesk(
    kind="intercom",
    verify=verify,
    envelope_read=envelope_read,
    event_parse=event_parse,
    reply_request=reply_request,
    reply_remote_id=reply_remote_id,
)
