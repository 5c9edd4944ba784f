"""Front: rule and application webhooks (two signature schemes), replies and comments through the Core API."""

from __future__ import annotations

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
    SignatureError,
    api_base,
    as_dict,
    as_list,
    b64_hmac,
    bearer,
    body_hash,
    channel_word,
    check_fresh,
    clean,
    html_extract,
    is_public_reply,
    json_bytes,
    need,
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
    """Rule webhooks: HMAC-SHA1 over the body. App webhooks (timestamp header present): HMAC-SHA256 over
    ``timestamp:body`` with the timestamp in milliseconds. Both base64."""
    signature = require_header(headers, "x-front-signature")
    stamp = headers.get("x-front-request-timestamp", "").strip()
    if not stamp:
        same(b64_hmac(secret_bytes(secret), body, "sha1"), signature)
        return
    try:
        signed_at = int(stamp) / 1000
    except (ValueError, OverflowError):
        raise SignatureError("unreadable x-front-request-timestamp") from None
    check_fresh(signed_at, now)
    same(b64_hmac(secret_bytes(secret), stamp.encode() + b":" + body, "sha256"), signature)


# ---------------------------------------------------------------- payloads


# Rule webhook event types, and application webhook types (which wrap the same event) that concern a conversation.
_HANDLED = frozenset(
    {
        "inbound", "outbound", "out_reply", "comment", "mention", "archive", "reopen", "assign", "unassign",
        "tag", "untag", "restore", "move",
        "inbound_received", "outbound_sent", "comment_added", "conversation_archived", "conversation_reopened",
        "conversation_assigned", "conversation_unassigned", "conversation_tagged", "conversation_untagged",
        "conversation_restored", "conversation_moved", "message_replied",
    }
)  # fmt: skip


def _event(payload: Payload) -> Payload:
    """Rule webhooks send the event itself; application webhooks wrap it as ``{type, authorization, payload}``."""
    inner = payload.get("payload")
    return inner if isinstance(inner, dict) else payload


def envelope_read(headers: Mapping[str, str], payload: Payload, raw: bytes) -> Envelope:
    event = _event(payload)
    event_type = clean(event.get("type")) or clean(payload.get("type"))
    handled = (event_type in _HANDLED or clean(payload.get("type")) in _HANDLED) and bool(event.get("conversation"))
    return Envelope(event_type, clean(event.get("id")) or body_hash(raw), handled)


def _contact_id(handle_holder: dict[str, Any]) -> str:
    contact_url = clean(as_dict(as_dict(handle_holder.get("_links")).get("related")).get("contact"))
    return contact_url.rstrip("/").rsplit("/", 1)[-1] if contact_url else ""


def _contact(conversation: dict[str, Any], message: dict[str, Any]) -> CustomerRef:
    """The conversation's recipient is the customer; failing that, the message's outside party (its sender
    when inbound, its addressee when outbound)."""
    recipient = as_dict(conversation.get("recipient"))
    if not clean(recipient.get("handle")):
        wanted = "from" if message.get("is_inbound") else "to"
        parties = [as_dict(r) for r in as_list(message.get("recipients"))]
        recipient = next((r for r in parties if r.get("role") == wanted and _contact_id(r)), {})
    handle = need(recipient.get("handle"), "conversation.recipient.handle")
    return CustomerRef(
        external_id=_contact_id(recipient) or handle,
        name=clean(recipient.get("name")),
        email=handle.lower() if "@" in handle else "",
    )


def _message(target: dict[str, Any], is_comment: bool) -> MessageData | None:
    # The HTML body marks quoted history structurally; the text version only by convention.
    html = clean(target.get("body"))
    extracted = html_extract(html) if html else text_extract(clean(target.get("text")))
    attachments = [
        clean(as_dict(a).get("filename") or as_dict(a).get("name"))
        for a in as_list(target.get("attachments"))
        if as_dict(a).get("filename") or as_dict(a).get("name")
    ]
    if not extracted.text and not attachments:
        return None
    author = as_dict(target.get("author"))
    author_name = " ".join(filter(None, [clean(author.get("first_name")), clean(author.get("last_name"))]))
    inbound = bool(target.get("is_inbound")) and not is_comment
    return MessageData(
        external_id=need(target.get("id"), "message id"),
        body=extracted.text or "(attachment: " + ", ".join(attachments) + ")",
        author_role="customer" if inbound else "staff",
        author_name=author_name or clean(author.get("username")),
        is_public=not is_comment,
        created_at=when(target.get("created_at") or target.get("posted_at")),
        attachments=attachments,
        links=extracted.links,
    )


def event_parse(event_type: str, headers: Mapping[str, str], payload: Payload) -> NormalisedEvent:
    event = _event(payload)
    conversation = as_dict(event.get("conversation"))
    target = as_dict(event.get("target"))
    target_type = clean(as_dict(target.get("_meta")).get("type"))
    data = as_dict(target.get("data"))
    messages = []
    if target_type in {"message", "comment"} and data:
        message = _message(data, is_comment=target_type == "comment")
        messages = [message] if message else []
    last_message = as_dict(conversation.get("last_message"))
    tags = [clean(as_dict(t).get("name")) for t in as_list(conversation.get("tags"))]
    return NormalisedEvent(
        event_type=event_type,
        customer=_contact(conversation, data if target_type == "message" else last_message),
        ticket_external_id=need(conversation.get("id"), "conversation.id"),
        subject=clean(conversation.get("subject")) or None,
        status=status_word(conversation.get("status")),
        channel=channel_word(last_message.get("type")),
        tags=tags if "tags" in conversation else None,
        created_at=when(conversation.get("created_at")),
        updated_at=when(event.get("emitted_at")),
        messages=messages,
    )


# ---------------------------------------------------------------- replies

API_BASE = "https://api2.frontapp.com"


def reply_request(delivery: OutboundDelivery) -> OutboundRequest:
    """``POST /conversations/{id}/messages`` (public) or ``/comments`` (internal)."""
    integration = delivery.integration
    payload: dict[str, Any] = {"body": delivery.message.body}
    if (integration.outbound_credentials or {}).get("author_id"):
        payload["author_id"] = integration.outbound_credentials["author_id"]
    path = "messages" if is_public_reply(delivery) else "comments"
    url = f"{api_base(integration, API_BASE)}/conversations/{ticket_external_id(delivery)}/{path}"
    return OutboundRequest("POST", url, json_bytes(payload), bearer(integration, "api_token"))


def reply_remote_id(response: httpx.Response) -> str:
    data = response_json(response)
    return clean(data.get("id") or data.get("message_uid"))


HELPDESK = Helpdesk(
    kind="front",
    verify=verify,
    envelope_read=envelope_read,
    event_parse=event_parse,
    reply_request=reply_request,
    reply_remote_id=reply_remote_id,
)
