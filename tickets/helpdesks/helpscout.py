"""Help Scout: ``X-HelpScout-Signature``, conversation events, replies and notes through the Mailbox API 2.0."""

from __future__ import annotations

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
    b64_hmac,
    bearer,
    body_hash,
    channel_word,
    clean,
    html_extract,
    is_public_reply,
    json_bytes,
    latest,
    need,
    require_header,
    same,
    secret_bytes,
    status_word,
    text_extract,
    ticket_external_id,
    when,
)
from tickets.models import CustomerIdentity

if TYPE_CHECKING:
    import httpx

    from tickets.models import OutboundDelivery


# ---------------------------------------------------------------- signature


def verify(headers: Mapping[str, str], body: bytes, secret: str, now: float) -> None:
    """HMAC-SHA1, base64, over the body. No timestamp."""
    signature = require_header(headers, "x-helpscout-signature")
    same(b64_hmac(secret_bytes(secret), body, "sha1"), signature)


# ---------------------------------------------------------------- payloads


_ROLES = {"customer": "customer", "message": "staff", "note": "staff", "chat": "customer", "phone": "staff"}


def envelope_read(headers: Mapping[str, str], payload: Payload, raw: bytes) -> Envelope:
    event_type = clean(headers.get("x-helpscout-event"))
    handled = event_type.startswith("convo.") and event_type not in {"convo.deleted", "convo.merged"}
    # No delivery id: the event name plus the body identifies a delivery (retries resend the same bytes).
    return Envelope(event_type, body_hash(event_type.encode() + b"\n" + raw), handled)


def _name(person: dict[str, Any]) -> str:
    """Mailbox API 2.0 says ``first``/``last``; the legacy format ``firstName``/``lastName``."""
    first = clean(person.get("first") or person.get("firstName"))
    last = clean(person.get("last") or person.get("lastName"))
    return " ".join(filter(None, [first, last])) or clean(person.get("name"))


def _attachments(thread: dict[str, Any]) -> list[str]:
    found = as_list(as_dict(thread.get("_embedded")).get("attachments")) + as_list(thread.get("attachments"))
    names = [clean(as_dict(a).get("filename") or as_dict(a).get("fileName")) for a in found]
    return [name for name in names if name]


def _thread(thread: dict[str, Any]) -> MessageData | None:
    kind = clean(thread.get("type")).lower()
    if kind not in _ROLES or clean(thread.get("state")).lower() in {"draft", "hidden"}:
        return None  # line items (status changes, assignments) and unsent drafts are not messages
    html = clean(thread.get("body"))
    extracted = html_extract(html) if html else text_extract(clean(thread.get("text")))
    attachments = _attachments(thread)
    if not extracted.text and not attachments:
        return None
    author = as_dict(thread.get("createdBy")) or as_dict(thread.get("author"))
    author_type = clean(author.get("type")).lower()
    role = {"customer": "customer", "user": "staff"}.get(author_type, _ROLES[kind])
    return MessageData(
        external_id=need(thread.get("id"), "thread id"),
        body=extracted.text or "(attachment: " + ", ".join(attachments) + ")",
        author_role=role,
        author_name=_name(author),
        is_public=kind != "note",
        created_at=when(thread.get("createdAt") or thread.get("created_at")),
        attachments=attachments,
        links=extracted.links,
    )


def event_parse(event_type: str, headers: Mapping[str, str], payload: Payload) -> NormalisedEvent:
    person = as_dict(payload.get("primaryCustomer")) or as_dict(payload.get("customer"))
    embedded = as_list(as_dict(payload.get("_embedded")).get("threads"))
    # Webhooks (Mailbox API 2.0 shape) list threads newest first; the legacy format has a top-level ``threads``.
    threads = list(reversed(embedded)) if embedded else as_list(payload.get("threads"))
    messages = [m for m in (_thread(as_dict(t)) for t in threads) if m]
    if all(m.created_at for m in messages):
        messages.sort(key=lambda m: m.created_at)  # type: ignore[arg-type, return-value]
    newest = latest(*(m.created_at for m in messages))
    tags = payload.get("tags")
    return NormalisedEvent(
        event_type=event_type,
        customer=CustomerRef(
            external_id=need(person.get("id"), "primaryCustomer.id"),
            name=_name(person),
            email=clean(person.get("email") or next(iter(as_list(person.get("emails"))), "")).lower(),
        ),
        ticket_external_id=need(payload.get("id"), "id"),
        subject=clean(payload.get("subject")) or None,
        status=status_word(payload.get("status")),
        channel=channel_word(as_dict(payload.get("source")).get("type") or payload.get("type")),
        tags=[
            clean(as_dict(t).get("tag") or as_dict(t).get("name") if isinstance(t, dict) else t) for t in as_list(tags)
        ]
        if "tags" in payload
        else None,
        created_at=when(payload.get("createdAt")),
        updated_at=latest(when(payload.get("userUpdatedAt") or payload.get("modifiedAt")), newest),
        messages=messages,
    )


# ---------------------------------------------------------------- replies

API_BASE = "https://api.helpscout.net"


def reply_request(delivery: OutboundDelivery) -> OutboundRequest:
    """A note (``POST .../notes``) or a reply on the customer's behalf thread (``POST .../reply``)."""
    integration = delivery.integration
    url = f"{api_base(integration, API_BASE)}/v2/conversations/{ticket_external_id(delivery)}"
    if not is_public_reply(delivery):
        return OutboundRequest(
            "POST", url + "/notes", json_bytes({"text": delivery.message.body}), bearer(integration, "access_token")
        )
    identity = CustomerIdentity.objects.filter(customer_id=delivery.message.customer_id, source="helpscout").first()
    if identity is None or not identity.external_id.isdigit():
        raise OutboundConfigError("a Help Scout reply needs the customer's Help Scout id")
    payload: dict[str, Any] = {"customer": {"id": int(identity.external_id)}, "text": delivery.message.body}
    if (integration.outbound_credentials or {}).get("user_id"):
        payload["user"] = int(integration.outbound_credentials["user_id"])
    return OutboundRequest("POST", url + "/reply", json_bytes(payload), bearer(integration, "access_token"))


def reply_remote_id(response: httpx.Response) -> str:
    return response.headers.get("resource-id", "")


HELPDESK = Helpdesk(
    kind="helpscout",
    verify=verify,
    envelope_read=envelope_read,
    event_parse=event_parse,
    reply_request=reply_request,
    reply_remote_id=reply_remote_id,
)
