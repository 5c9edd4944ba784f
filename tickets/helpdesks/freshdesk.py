"""Freshdesk: unsigned automation webhooks (the URL token authenticates), admin-written placeholder bodies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from tickets.helpdesks import standard
from tickets.helpdesks.base import (
    CustomerRef,
    Envelope,
    Helpdesk,
    MessageData,
    NormalisedEvent,
    Payload,
    as_dict,
    body_hash,
    clean,
    digest_id,
    html_to_text,
    need,
    priority_word,
    require_header,
    role_word,
    same,
    status_word,
    when,
)

if TYPE_CHECKING:
    pass


# ---------------------------------------------------------------- signature


def verify(headers: Mapping[str, str], body: bytes, secret: str, now: float) -> None:
    """Freshdesk signs nothing: the per-integration URL token authenticates it (checked before we get here).
    With a secret configured, the admin-defined ``X-Webhook-Token`` header must carry it as well."""
    if secret:
        same(secret, require_header(headers, "x-webhook-token"))


# ---------------------------------------------------------------- payloads


def envelope_read(headers: Mapping[str, str], payload: Payload, raw: bytes) -> Envelope:
    hook = as_dict(payload.get("freshdesk_webhook"))
    event_type = clean(hook.get("triggered_event")).strip("{}") or "ticket.updated"
    return Envelope(event_type, body_hash(raw), bool(hook.get("ticket_id")))


def event_parse(event_type: str, headers: Mapping[str, str], payload: Payload) -> NormalisedEvent:
    hook = as_dict(payload.get("freshdesk_webhook"))
    ticket_id = need(hook.get("ticket_id"), "freshdesk_webhook.ticket_id")
    email = clean(hook.get("requester_email")).lower()
    messages = []
    description = html_to_text(clean(hook.get("ticket_description")))
    if description:
        messages.append(MessageData(external_id="description", body=description, author_role="customer"))
    comment = html_to_text(clean(hook.get("ticket_latest_public_comment")))
    if comment:
        messages.append(
            MessageData(
                external_id=clean(hook.get("comment_id")) or digest_id("comment-", comment),
                body=comment,
                author_role=role_word(hook.get("comment_author_role"), "staff"),
            )
        )
    return NormalisedEvent(
        event_type=event_type,
        customer=CustomerRef(
            external_id=clean(hook.get("requester_id")) or need(email, "requester_id or requester_email"),
            name=clean(hook.get("requester_name")),
            email=email,
        ),
        ticket_external_id=ticket_id,
        subject=clean(hook.get("ticket_subject")) or None,
        status=status_word(hook.get("ticket_status")),
        priority=priority_word(hook.get("ticket_priority")),
        tags=[t.strip() for t in clean(hook.get("ticket_tags")).split(",") if t.strip()] or None,
        updated_at=when(hook.get("ticket_updated_at")),
        messages=messages,
    )


# ---------------------------------------------------------------- replies

# Replies go out as a Standard Webhooks POST to a receiver the organisation runs (see ``standard``).
reply_request = standard.reply_request


HELPDESK = Helpdesk(
    kind="freshdesk",
    verify=verify,
    envelope_read=envelope_read,
    event_parse=event_parse,
    reply_request=reply_request,
)
