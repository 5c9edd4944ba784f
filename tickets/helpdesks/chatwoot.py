"""Chatwoot (open source): account webhooks for conversations and messages, signed with the webhook's secret;
replies and private notes through the Application API."""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
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
    PayloadError,
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
from tickets.helpdesks.history import HistoryClient, HistoryPage, ImportAuthError, ImportSourceError, ItemError

if TYPE_CHECKING:
    import httpx

    from tickets.models import Integration, OutboundDelivery


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


# ---------------------------------------------------------------- history (tickets.imports)
#
# The Application API (developers.chatwoot.com, "Conversations List", "Get messages"; chatwoot/chatwoot
# ConversationFinder, MessageFinder and the conversation and message jbuilder views), with a user's
# ``api_access_token`` header, under ``/api/v1/accounts/{account_id}``:
# - GET .../conversations?status=all&sort_by=created_at_asc&page=N: {"data": {"meta": {"all_count": N, ...},
#   "payload": [conversation, ...]}}, a page of 25 (the install's CONVERSATION_RESULTS_PER_PAGE). Without
#   status=all only open conversations come back. Oldest first keeps a page's contents fixed while the import
#   runs (the default, latest activity first, moves a conversation to page 1 when it gets a message), so the
#   page number is the resume cursor. A conversation: "id" (the display id the webhooks and the UI use),
#   "meta": {"sender": the contact, "channel": "Channel::Email", ...}, "status", "priority", "labels",
#   "additional_attributes" ("mail_subject" for email), "created_at"/"last_activity_at"/"timestamp" (epoch
#   seconds) and "updated_at" in recent versions. There is no "updated since" filter for pages, so --since is
#   applied to last activity here.
# - GET .../conversations/{id}/messages: {"meta": {...}, "payload": [message, ...]}, the latest 20 in
#   ascending order; ?before=<message id> gives the 20 before that one. A message: "id", "content",
#   "message_type" (0 incoming, 1 outgoing, 2 activity, 3 template), "private" (a note), "created_at"
#   (epoch), "sender" (push_event_data with "type": "contact", "user" or "agent_bot"), "content_attributes"
#   ({"deleted": true} once deleted: its content is then the "This message was deleted" placeholder).
# Activity and template messages are skipped as the webhook parser skips them, deleted messages too.
# Ids match the webhooks': the contact id, the conversation's display id, the message id.
# Rate limit: rack-attack, 3000 requests a minute per IP by default, in fixed one-minute windows; its 429
# carries no Retry-After, so the wait is to the next window. The token must be an administrator's: an agent's
# lists only the inboxes they belong to.
# Credentials: outbound_credentials api_access_token + account_id; outbound_base_url for self-hosted installs.

CLOUD_BASE = "https://app.chatwoot.com"
MESSAGES_PAGE = 20  # MessageFinder's page: fewer means the conversation's first message was reached
RACK_ATTACK_PERIOD = 60


class ChatwootReader:
    def __init__(self, integration: Integration, *, messages_page: int = MESSAGES_PAGE) -> None:
        credentials = integration.outbound_credentials or {}
        token, account = clean(credentials.get("api_access_token")), clean(credentials.get("account_id"))
        if not token or not account.isdigit():
            raise ImportAuthError(
                "the Chatwoot integration needs credentials: api_access_token (Profile settings → Access token, "
                "an administrator's) and the numeric account_id"
            )
        base = (integration.outbound_base_url or CLOUD_BASE).rstrip("/")
        self.account_url = f"{base}/api/v1/accounts/{account}"
        self.headers = {"api_access_token": token}
        self.client = HistoryClient(vendor="Chatwoot", auth=lambda: self.headers, unnamed_wait=_next_window)
        self._page_size = 0
        self.messages_page = messages_page

    def pages(self, *, cursor: str, since: datetime | None) -> Iterator[HistoryPage]:
        page = int(cursor or 1)
        while True:
            params = {"status": "all", "sort_by": "created_at_asc", "page": page}
            data = as_dict(as_dict(self.client.get(f"{self.account_url}/conversations", params)).get("data"))
            if not isinstance(data.get("payload"), list):
                raise ImportSourceError("Chatwoot's conversation list answered without data.payload")
            conversations = [c for c in data["payload"] if isinstance(c, dict)]
            count = as_dict(data.get("meta")).get("all_count")
            total = count if isinstance(count, int) and count >= 0 else None
            # The server decides the page size; the largest page seen is at most that, so this never ends early.
            self._page_size = max(self._page_size, len(conversations))
            done = not conversations or (
                total is not None and (page - 1) * self._page_size + len(conversations) >= total
            )
            if since is not None:
                conversations = [c for c in conversations if (_last_activity(c) or since) >= since]
            yield HistoryPage(
                items=conversations, next_cursor=str(page + 1), done=done, total=total if since is None else None
            )
            if done:
                return
            page += 1

    def item_key(self, item: Any) -> tuple[str, datetime | None]:
        return f"conversation {item.get('id')}", _last_activity(item)

    def ticket(self, item: Any) -> NormalisedEvent:
        try:
            return self._ticket(item)
        except PayloadError as exc:
            raise ItemError(f"conversation {item.get('id')}", str(exc)) from None

    def _ticket(self, conversation: dict[str, Any]) -> NormalisedEvent:
        conversation_id = need(conversation.get("id"), "conversation id")
        customer = _contact(conversation, {})
        raw = [m for m in self._messages(conversation_id) if not as_dict(m.get("content_attributes")).get("deleted")]
        messages = [m for m in (_message(message) for message in raw) if m]
        meta = as_dict(conversation.get("meta"))
        channel = clean(meta.get("channel") or conversation.get("channel"))
        subject = clean(as_dict(conversation.get("additional_attributes")).get("mail_subject"))
        return NormalisedEvent(
            event_type="import.chatwoot",
            customer=customer,
            ticket_external_id=conversation_id,
            subject=subject or (first_line(messages[0].body) if messages else None),
            status=status_word(conversation.get("status")),
            priority=priority_word(conversation.get("priority")),
            channel=_CHANNELS.get(channel) or channel_word(channel),
            tags=[clean(label) for label in as_list(conversation.get("labels")) if clean(label)],
            created_at=when(conversation.get("created_at")),
            updated_at=_last_activity(conversation),
            messages=messages,
        )

    def _messages(self, conversation_id: str) -> list[dict[str, Any]]:
        """Every message of a conversation, oldest first, reading back from the latest page with ``before``."""
        url = f"{self.account_url}/conversations/{conversation_id}/messages"
        found: dict[int, dict[str, Any]] = {}
        params: dict[str, Any] | None = None
        while True:
            payload = as_dict(self.client.get(url, params)).get("payload")
            if not isinstance(payload, list):
                raise PayloadError("messages answer without a payload list")
            batch = [m for m in payload if isinstance(m, dict) and isinstance(m.get("id"), int)]
            new = [m for m in batch if m["id"] not in found]
            found.update((m["id"], m) for m in new)
            if len(payload) < self.messages_page or not new:
                break
            params = {"before": min(m["id"] for m in new)}
        return [found[key] for key in sorted(found)]

    def close(self) -> None:
        self.client.close()


def _last_activity(conversation: Mapping[str, Any]) -> datetime | None:
    """The later of ``updated_at`` (recent versions) and ``last_activity_at``/``timestamp`` (every version)."""
    times = []
    for key in ("updated_at", "last_activity_at", "timestamp"):
        try:
            value = when(conversation.get(key))
        except PayloadError:
            value = None
        if value is not None:
            times.append(value)
    return max(times, default=None)


def _next_window() -> float:
    """Seconds until rack-attack's next one-minute window (windows start at multiples of the period in epoch
    seconds), plus one for clock skew."""
    return RACK_ATTACK_PERIOD - time.time() % RACK_ATTACK_PERIOD + 1.0


HELPDESK = Helpdesk(
    kind="chatwoot",
    verify=verify,
    envelope_read=envelope_read,
    event_parse=event_parse,
    reply_request=reply_request,
    reply_remote_id=reply_remote_id,
    history_reader=ChatwootReader,
)
