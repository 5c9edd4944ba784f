"""Zammad (open source): trigger webhooks (``X-Hub-Signature``), articles public or internal through the REST API."""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tickets.helpdesks.base import (
    CustomerRef,
    Envelope,
    Helpdesk,
    MessageData,
    NormalisedEvent,
    OutboundConfigError,
    OutboundRequest,
    Payload,
    api_base,
    as_dict,
    as_list,
    body_hash,
    channel_word,
    clean,
    credential,
    html_extract,
    is_public_reply,
    json_bytes,
    need,
    priority_word,
    require_header,
    response_json,
    same,
    secret_bytes,
    status_word,
    text_extract,
    ticket_external_id,
    when,
)

if TYPE_CHECKING:
    import httpx

    from tickets.models import OutboundDelivery


# ---------------------------------------------------------------- signature


def verify(headers: Mapping[str, str], body: bytes, secret: str, now: float) -> None:
    """``X-Hub-Signature: sha1=<hex>``, HMAC-SHA1 over the body with the webhook's signature token. No timestamp:
    the ``X-Zammad-Delivery`` id is the replay defence (deliveries are deduplicated on it)."""
    signature = require_header(headers, "x-hub-signature")
    same("sha1=" + hmac.new(secret_bytes(secret), body, "sha1").hexdigest(), signature.lower())


# ---------------------------------------------------------------- payloads

_STATES = {"pending reminder": "pending", "pending close": "pending", "merged": "closed", "removed": "closed"}
_SENDERS = {"customer": "customer", "agent": "staff", "system": "system"}


def envelope_read(headers: Mapping[str, str], payload: Payload, raw: bytes) -> Envelope:
    ticket = as_dict(payload.get("ticket"))
    event_type = clean(headers.get("x-zammad-trigger")) or "zammad.trigger"
    delivery = clean(headers.get("x-zammad-delivery")) or body_hash(raw)
    state = clean(ticket.get("state") or as_dict(ticket.get("state_obj")).get("name")).lower()
    # A merged or removed ticket lives on elsewhere (or nowhere): stored, not applied.
    return Envelope(event_type, delivery, bool(ticket.get("id")) and state not in {"merged", "removed"})


def _person_name(person: dict[str, Any]) -> str:
    return " ".join(filter(None, [clean(person.get("firstname")), clean(person.get("lastname"))]))


def _article(article: dict[str, Any]) -> MessageData | None:
    body = clean(article.get("body"))
    is_html = "html" in clean(article.get("content_type")).lower()
    extracted = html_extract(body) if is_html else text_extract(body)
    attachments = [clean(as_dict(a).get("filename")) for a in as_list(article.get("attachments"))]
    attachments = [name for name in attachments if name]
    if not extracted.text and not attachments:
        return None
    sender = clean(article.get("sender") or as_dict(article.get("sender_obj")).get("name")).lower()
    author = as_dict(article.get("created_by"))
    return MessageData(
        external_id=need(article.get("id"), "article.id"),
        body=extracted.text or "(attachment: " + ", ".join(attachments) + ")",
        author_role=_SENDERS.get(sender, "staff"),
        author_name=_person_name(author) or clean(article.get("from")),
        is_public=not article.get("internal"),
        created_at=when(article.get("created_at")),
        attachments=attachments,
        links=extracted.links,
    )


def _priority(value: Any) -> str | None:
    """Zammad names priorities with their rank: ``1 low``, ``2 normal``, ``3 high``."""
    return priority_word(re.sub(r"^\d+\s*", "", clean(value)))


def event_parse(event_type: str, headers: Mapping[str, str], payload: Payload) -> NormalisedEvent:
    ticket = as_dict(payload.get("ticket"))
    customer = as_dict(ticket.get("customer"))
    article = as_dict(payload.get("article"))
    message = _article(article) if article else None
    state = clean(ticket.get("state") or as_dict(ticket.get("state_obj")).get("name")).lower()
    article_type = clean(article.get("type") or as_dict(ticket.get("create_article_type")).get("name"))
    tags = ticket.get("tags")
    return NormalisedEvent(
        event_type=event_type,
        customer=CustomerRef(
            external_id=need(customer.get("id") or ticket.get("customer_id"), "ticket.customer.id"),
            name=_person_name(customer),
            email=clean(customer.get("email")).lower(),
        ),
        ticket_external_id=need(ticket.get("id"), "ticket.id"),
        subject=clean(ticket.get("title")) or None,
        status=status_word(_STATES.get(state, state)),
        priority=_priority(ticket.get("priority") or as_dict(ticket.get("priority_obj")).get("name")),
        channel=channel_word(article_type),
        tags=[clean(t) for t in (tags if isinstance(tags, list) else clean(tags).split(",")) if clean(t)]
        if tags is not None
        else None,
        created_at=when(ticket.get("created_at")),
        updated_at=when(ticket.get("updated_at")),
        messages=[message] if message else [],
    )


# ---------------------------------------------------------------- replies


def reply_request(delivery: OutboundDelivery) -> OutboundRequest:
    """``POST /api/v1/ticket_articles``: an internal note, or a public article (type ``note`` by default, which the
    customer sees in the portal; ``public_article_type`` in the credentials may say ``web`` or ``email``)."""
    integration = delivery.integration
    ticket_id = ticket_external_id(delivery)
    if not ticket_id.isdigit():
        raise OutboundConfigError("a Zammad article needs the ticket's numeric id")
    public = is_public_reply(delivery)
    article_type = str((integration.outbound_credentials or {}).get("public_article_type") or "note")
    body = json_bytes(
        {
            "ticket_id": int(ticket_id),
            "body": delivery.message.body,
            "content_type": "text/plain",
            "type": article_type if public else "note",
            "internal": not public,
            "sender": "Agent",
        }
    )
    headers = {"Authorization": f"Token token={credential(integration, 'api_token')}"}
    return OutboundRequest("POST", f"{api_base(integration)}/api/v1/ticket_articles", body, headers)


def reply_remote_id(response: httpx.Response) -> str:
    return clean(response_json(response).get("id"))


HELPDESK = Helpdesk(
    kind="zammad",
    verify=verify,
    envelope_read=envelope_read,
    event_parse=event_parse,
    reply_request=reply_request,
    reply_remote_id=reply_remote_id,
)
