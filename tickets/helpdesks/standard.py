"""Standard Webhooks (and Svix): a generic, documented signature scheme and ticket/message event shape, used
by in-house helpdesks; replies go out the same way, signed, to the organisation's receiver."""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from tickets.helpdesks.base import (
    CustomerRef,
    Envelope,
    Helpdesk,
    MessageData,
    NormalisedEvent,
    OutboundConfigError,
    OutboundRequest,
    Payload,
    SignatureError,
    as_dict,
    as_list,
    b64_hmac,
    body_hash,
    channel_word,
    check_fresh,
    clean,
    html_to_text,
    is_public_reply,
    json_bytes,
    need,
    priority_word,
    require_header,
    role_word,
    status_word,
    ticket_external_id,
    when,
)

if TYPE_CHECKING:
    from tickets.models import OutboundDelivery


# ---------------------------------------------------------------- signature


def standard_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: the base64 after ``whsec_``, decoded."""
    if not secret:
        raise SignatureError("the integration has no signing secret configured")
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("the signing secret is not a valid whsec_ secret") from None


def standard_sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one message (used by outbound delivery too)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + b64_hmac(standard_key(secret), signed, "sha256")


def verify(headers: Mapping[str, str], body: bytes, secret: str, now: float) -> None:
    """Standard Webhooks (and Svix, whose headers are ``svix-*``): HMAC-SHA256 over ``id.timestamp.body``;
    the signature header may carry several space-separated ``v1,<b64>`` entries (key rotation)."""
    # Svix sends ``svix-*`` headers; everything else (and a request with neither) is named the standard way.
    prefix = "svix" if headers.get("svix-id") and not headers.get("webhook-id") else "webhook"
    msg_id = require_header(headers, f"{prefix}-id")
    stamp = require_header(headers, f"{prefix}-timestamp")
    signatures = require_header(headers, f"{prefix}-signature")
    try:
        signed_at = int(stamp)
    except ValueError:
        raise SignatureError(f"unreadable {prefix}-timestamp") from None
    check_fresh(signed_at, now)
    expected = standard_sign(secret, msg_id, signed_at, body).encode()
    # Check every candidate (no early exit) so timing does not reveal which one matched.
    matched = False
    for candidate in signatures.split():
        matched |= hmac.compare_digest(expected, candidate.encode())
    if not matched:
        raise SignatureError("signature does not match")


# ---------------------------------------------------------------- payloads


# Upserts of a ticket and its messages. Anything else (ticket.deleted, ticket.merged, ...) is stored as ignored:
# treating a deletion as an upsert would resurrect the ticket.
_HANDLED = frozenset({"ticket.created", "ticket.updated", "ticket.solved", "ticket.closed", "ticket.reopened",
                      "message.created", "message.updated"})  # fmt: skip


def envelope_read(headers: Mapping[str, str], payload: Payload, raw: bytes) -> Envelope:
    event_type = clean(payload.get("type"))
    delivery = clean(headers.get("webhook-id") or headers.get("svix-id")) or body_hash(raw)
    return Envelope(event_type, delivery, event_type in _HANDLED)


def event_parse(event_type: str, headers: Mapping[str, str], payload: Payload) -> NormalisedEvent:
    data = as_dict(payload.get("data"))
    ticket = as_dict(data.get("ticket")) or data
    requester = as_dict(ticket.get("requester")) or as_dict(data.get("requester"))
    email = clean(requester.get("email")).lower()
    messages = []
    raw_message = as_dict(data.get("message"))
    if raw_message:
        messages.append(
            MessageData(
                external_id=need(raw_message.get("id"), "data.message.id"),
                body=html_to_text(need(raw_message.get("body"), "data.message.body")),
                replaces=event_type == "message.updated",
                author_role=role_word(raw_message.get("author_role"), "customer"),
                author_name=clean(raw_message.get("author_name")),
                is_public=raw_message.get("public", True) is not False,
                created_at=when(raw_message.get("created_at")),
            )
        )
    return NormalisedEvent(
        event_type=event_type,
        customer=CustomerRef(
            external_id=clean(requester.get("id")) or need(email, "requester.id or requester.email"),
            name=clean(requester.get("name")),
            email=email,
        ),
        ticket_external_id=need(ticket.get("id"), "data.id"),
        subject=clean(ticket.get("subject")) or None,
        status=status_word(ticket.get("status")),
        priority=priority_word(ticket.get("priority")),
        channel=channel_word(ticket.get("channel")),
        tags=[clean(t) for t in as_list(ticket.get("tags"))] if "tags" in ticket else None,
        created_at=when(ticket.get("created_at")),
        updated_at=when(ticket.get("updated_at") or payload.get("timestamp")),
        messages=messages,
    )


# ---------------------------------------------------------------- replies


def reply_request(delivery: OutboundDelivery) -> OutboundRequest:
    """A generic Standard Webhooks POST; the id is stable across retries so the receiver can deduplicate."""
    integration, message = delivery.integration, delivery.message
    secret = (integration.outbound_credentials or {}).get("webhook_secret") or integration.signing_secret
    if not str(secret).startswith("whsec_"):
        raise OutboundConfigError("standard outbound needs a whsec_ secret (outbound_credentials.webhook_secret)")
    ticket = message.ticket
    body = json_bytes(
        {
            "type": "message.created",
            "timestamp": message.created_at.isoformat(),
            "data": {
                "ticket": {"id": ticket_external_id(delivery), "subject": ticket.subject if ticket else ""},
                "customer": {"id": message.customer_id, "email": message.customer.email, "name": message.customer.name},
                "message": {
                    "id": str(message.pk),
                    "body": message.body,
                    "author_role": message.author_role,
                    "public": is_public_reply(delivery),
                    "created_at": message.created_at.isoformat(),
                },
            },
        }
    )
    msg_id, stamp = f"msg_supportmem_{delivery.pk}", int(time.time())
    try:
        signature = standard_sign(str(secret), msg_id, stamp, body)
    except SignatureError as exc:
        raise OutboundConfigError(str(exc)) from None
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(stamp), "webhook-signature": signature}
    if not integration.outbound_base_url:
        raise OutboundConfigError("standard outbound needs outbound_base_url (the receiver's URL)")
    return OutboundRequest("POST", integration.outbound_base_url, body, headers)


HELPDESK = Helpdesk(
    kind="standard",
    verify=verify,
    envelope_read=envelope_read,
    event_parse=event_parse,
    reply_request=reply_request,
)
