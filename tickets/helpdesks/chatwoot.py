"""Chatwoot (open source): account webhooks for conversations and messages, signed with the webhook's secret;
replies and private notes through the Application API."""

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
    OutboundConfigError,
    OutboundRequest,
    Payload,
    SignatureError,
    api_base,
    as_dict,
    as_list,
    body_hash,
    channel_word,
    check_fresh,
    clean,
    credential,
    first_line,
    html_extract,
    is_public_reply,
    json_bytes,
    need,
    priority_word,
    require_header,
    response_json,
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
    """``X-Chatwoot-Signature: sha256=<hex>``, HMAC-SHA256 over ``{timestamp}.{body}`` with the webhook's secret;
    ``X-Chatwoot-Timestamp`` in epoch seconds, refused when more than five minutes off."""
    signature = require_header(headers, "x-chatwoot-signature")
    stamp = require_header(headers, "x-chatwoot-timestamp")
    try:
        signed_at = int(stamp)
    except ValueError:
        raise SignatureError("unreadable x-chatwoot-timestamp") from None
    check_fresh(signed_at, now)
    expected = "sha256=" + hmac.new(secret_bytes(secret), stamp.encode() + b"." + body, "sha256").hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.lower().encode()):
        raise SignatureError("signature does not match")


# ---------------------------------------------------------------- payloads

_HANDLED = frozenset(
    {
        "message_created",
        "message_updated",
        "conversation_created",
        "conversation_updated",
        "conversation_status_changed",
    }
)
# message_type arrives as a word in message events and as Chatwoot's enum number inside conversation objects.
_MESSAGE_TYPES = {0: "incoming", 1: "outgoing", 2: "activity", 3: "template"}
_CHANNELS = {
    "Channel::WebWidget": "widget",
    "Channel::Email": "email",
    "Channel::Api": "api",
    "Channel::Whatsapp": "social",
    "Channel::FacebookPage": "social",
    "Channel::Instagram": "social",
    "Channel::TwitterProfile": "social",
    "Channel::Telegram": "social",
    "Channel::Line": "social",
    "Channel::Sms": "phone",
    "Channel::TwilioSms": "phone",
}


def envelope_read(headers: Mapping[str, str], payload: Payload, raw: bytes) -> Envelope:
    event_type = clean(payload.get("event"))
    delivery = clean(headers.get("x-chatwoot-delivery")) or body_hash(raw)
    return Envelope(event_type, delivery, event_type in _HANDLED)


def _message_type(message: dict[str, Any]) -> str:
    value = message.get("message_type")
    return _MESSAGE_TYPES.get(value, "") if isinstance(value, int) else clean(value).lower()


def _message(message: dict[str, Any]) -> MessageData | None:
    kind = _message_type(message)
    if kind not in {"incoming", "outgoing"}:
        return None  # activity lines ("Conversation was resolved by …") and templates are not what anyone wrote
    extracted = html_extract(clean(message.get("content")))
    attachments = [
        clean(as_dict(a).get("file_name") or as_dict(a).get("data_url")).rsplit("/", 1)[-1]
        for a in as_list(message.get("attachments"))
        if as_dict(a).get("file_name") or as_dict(a).get("data_url")
    ]
    if not extracted.text and not attachments:
        return None
    sender = as_dict(message.get("sender"))
    sender_type = clean(sender.get("type") or message.get("sender_type")).lower()
    if sender_type in {"contact"}:
        role = "customer"
    elif sender_type in {"agent_bot", "agentbot", "captain_assistant"}:
        role = "system"
    elif sender_type:
        role = "staff"
    else:
        role = "customer" if kind == "incoming" else "staff"
    private = bool(message.get("private"))
    return MessageData(
        external_id=need(message.get("id"), "message id"),
        body=extracted.text or "(attachment: " + ", ".join(attachments) + ")",
        author_role=role,
        author_name=clean(sender.get("name")),
        is_public=not private,
        created_at=when(message.get("created_at")),
        attachments=attachments,
        links=extracted.links,
    )


def _contact(conversation: dict[str, Any], payload: Payload) -> CustomerRef:
    person = as_dict(as_dict(conversation.get("meta")).get("sender")) or as_dict(payload.get("contact"))
    sender = as_dict(payload.get("sender"))
    if not person and clean(sender.get("type")).lower() == "contact":
        person = sender
    return CustomerRef(
        external_id=need(person.get("id"), "conversation.meta.sender.id"),
        name=clean(person.get("name")),
        email=clean(person.get("email")).lower(),
    )


def event_parse(event_type: str, headers: Mapping[str, str], payload: Payload) -> NormalisedEvent:
    is_message = event_type.startswith("message_")
    # Message events carry the message at the top and its conversation inside; conversation events are the
    # conversation itself, with its recent messages.
    conversation = as_dict(payload.get("conversation")) if is_message else payload
    customer = _contact(conversation, payload)
    raw_messages = [payload] if is_message else [as_dict(m) for m in as_list(conversation.get("messages"))]
    messages = [m for m in (_message(raw) for raw in raw_messages) if m]
    channel = _CHANNELS.get(clean(conversation.get("channel") or as_dict(payload.get("inbox")).get("channel_type")))
    first_text = messages[0].body if messages else ""
    additional = as_dict(conversation.get("additional_attributes"))
    return NormalisedEvent(
        event_type=event_type,
        customer=customer,
        ticket_external_id=need(conversation.get("id") or payload.get("conversation_id"), "conversation.id"),
        subject=clean(additional.get("mail_subject")) or (first_line(first_text) if not is_message else None),
        status=status_word(conversation.get("status")),
        priority=priority_word(conversation.get("priority")),
        channel=channel or channel_word(conversation.get("channel")),
        tags=[clean(label) for label in as_list(conversation.get("labels"))] if "labels" in conversation else None,
        created_at=when(conversation.get("created_at")),
        updated_at=when(conversation.get("updated_at") or conversation.get("timestamp")),
        messages=messages,
    )


# ---------------------------------------------------------------- replies


def reply_request(delivery: OutboundDelivery) -> OutboundRequest:
    """``POST /api/v1/accounts/{account_id}/conversations/{id}/messages``: an outgoing message, or a private note."""
    integration = delivery.integration
    account_id = credential(integration, "account_id")
    if not account_id.isdigit():
        raise OutboundConfigError("chatwoot outbound needs a numeric account_id credential")
    body = json_bytes(
        {
            "content": delivery.message.body,
            "message_type": "outgoing",
            "private": not is_public_reply(delivery),
            "content_type": "text",
        }
    )
    url = f"{api_base(integration)}/api/v1/accounts/{account_id}/conversations/{ticket_external_id(delivery)}/messages"
    return OutboundRequest("POST", url, body, {"api_access_token": credential(integration, "api_access_token")})


def reply_remote_id(response: httpx.Response) -> str:
    return clean(response_json(response).get("id"))


HELPDESK = Helpdesk(
    kind="chatwoot",
    verify=verify,
    envelope_read=envelope_read,
    event_parse=event_parse,
    reply_request=reply_request,
    reply_remote_id=reply_remote_id,
)
