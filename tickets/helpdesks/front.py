"""Front: rule and application webhooks (two signature schemes), replies and comments through the Core API."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

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
from tickets.helpdesks.history import HistoryClient, HistoryPage, ImportAuthError, ImportSourceError, ItemError

if TYPE_CHECKING:
    import httpx

    from tickets.models import Integration, OutboundDelivery


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


# ---------------------------------------------------------------- history (tickets.imports)
#
# The Core API (dev.frontapp.com, "List conversations", "Search conversations", "List conversation messages",
# "List conversation comments", "Pagination", "Rate limiting"):
# - GET /conversations?limit=100 (most recently updated first), or with --since
#   GET /conversations/search/after:EPOCH?limit=100 (the search's date filter; ordered by last activity):
#   {"_pagination": {"next": URL or null}, "_links": {...}, "_results": [conversation, ...]} (the search adds
#   "_total"). The next URL carries a page_token, which is our cursor. A conversation: {"id": "cnv_...",
#   "subject", "status": archived/assigned/unassigned/deleted, "recipient": {"handle", "role",
#   "_links": {"related": {"contact": ".../contacts/crd_..."}}}, "tags": [{"name"}], "created_at",
#   "updated_at"} (epoch seconds, fractional). Deleted (trashed) conversations are skipped.
# - GET /conversations/{id}/messages?limit=100 (newest first) and GET /conversations/{id}/comments?limit=100,
#   both paged the same way: messages {"id": "msg_...", "type", "is_inbound", "draft_mode", "created_at",
#   "body" (HTML), "text", "author": teammate or null, "recipients": [...], "attachments": [...]}; comments
#   {"id": "com_...", "author": teammate, "body", "posted_at"} are internal. Drafts are skipped.
# - Rate limits: X-RateLimit-Limit / X-RateLimit-Remaining / X-RateLimit-Reset (epoch seconds); 429 with
#   Retry-After.
# Ids match what the webhooks store (the same ``_message`` and ``_contact``): the customer is the recipient's
# contact id (its handle when it has no contact), the ticket the conversation id, each message or comment its id.
# Credentials: outbound_credentials api_token (Bearer); base https://api2.frontapp.com.

PAGE_LIMIT = 100


class FrontReader:
    def __init__(self, integration: Integration, *, limit: int = PAGE_LIMIT) -> None:
        self.base = (integration.outbound_base_url or API_BASE).rstrip("/")
        token = clean((integration.outbound_credentials or {}).get("api_token"))
        if not token:
            raise ImportAuthError("the Front integration needs credentials: api_token")
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self.limit = max(1, min(limit, PAGE_LIMIT))
        self.client = HistoryClient(vendor="Front", auth=lambda: self.headers)

    def pages(self, *, cursor: str, since: datetime | None) -> Iterator[HistoryPage]:
        if since is None:
            url = f"{self.base}/conversations"
        else:
            # after: is strict; a second earlier keeps a conversation last active exactly at --since.
            start = int(since.timestamp()) - 1
            url = f"{self.base}/conversations/search/{quote(f'after:{start}', safe='')}"
        while True:
            params: dict[str, Any] = {"limit": self.limit}
            if cursor:
                params["page_token"] = cursor
            body = self.client.get(url, params)
            results = _results(body)
            if results is None:
                raise ImportSourceError("Front answered the conversation list without a _results list")
            conversations = [c for c in results if clean(c.get("status")) != "deleted"]
            total = body.get("_total")
            after = _page_token(body)
            yield HistoryPage(
                items=conversations,
                next_cursor=after or cursor,
                done=not after,
                total=total if isinstance(total, int) and total >= 0 else None,
            )
            if not after:
                return
            cursor = after

    def item_key(self, item: Any) -> tuple[str, datetime | None]:
        try:
            updated = when(item.get("updated_at"))
        except PayloadError:
            updated = None
        return f"conversation {item.get('id')}", updated

    def ticket(self, item: Any) -> NormalisedEvent:
        where = f"conversation {item.get('id')}"
        try:
            return self._ticket(item)
        except PayloadError as exc:
            raise ItemError(where, str(exc)) from None

    def _ticket(self, conversation: dict[str, Any]) -> NormalisedEvent:
        conversation_id = need(conversation.get("id"), "conversation id")
        path = f"{self.base}/conversations/{quote(conversation_id, safe='')}"
        sent = [m for m in self._all(path + "/messages") if not m.get("draft_mode")]
        comments = self._all(path + "/comments")
        sent.sort(key=lambda m: float(m.get("created_at") or 0))
        messages = [m for m in (_message(target, is_comment=False) for target in sent) if m]
        messages += [m for m in (_message(target, is_comment=True) for target in comments) if m]
        messages.sort(key=lambda m: (m.created_at is None, m.created_at))
        opening = next((m for m in sent if m.get("is_inbound")), sent[0] if sent else {})
        latest = sent[-1] if sent else {}
        updated = when(conversation.get("updated_at")) or max(
            (m.created_at for m in messages if m.created_at), default=None
        )
        return NormalisedEvent(
            event_type="import.front",
            customer=_contact(conversation, opening),
            ticket_external_id=conversation_id,
            subject=clean(conversation.get("subject")) or None,
            status=status_word(conversation.get("status")),
            channel=channel_word(latest.get("type")),
            tags=[clean(as_dict(t).get("name")) for t in as_list(conversation.get("tags")) if as_dict(t).get("name")],
            created_at=when(conversation.get("created_at")),
            updated_at=updated,
            messages=messages,
        )

    def _all(self, url: str) -> list[dict[str, Any]]:
        """Every item of a paged list of one conversation (messages or comments)."""
        items: list[dict[str, Any]] = []
        cursor = ""
        while True:
            params: dict[str, Any] = {"limit": PAGE_LIMIT}
            if cursor:
                params["page_token"] = cursor
            body = self.client.get(url, params)
            results = _results(body)
            if results is None:  # this conversation cannot be read; the others may
                raise PayloadError(f"{urlsplit(url).path} answered without a _results list")
            items.extend(results)
            cursor = _page_token(body)
            if not cursor:
                return items

    def close(self) -> None:
        self.client.close()


def _results(body: Any) -> list[dict[str, Any]] | None:
    if not isinstance(body, dict) or not isinstance(body.get("_results"), list):
        return None
    return [item for item in body["_results"] if isinstance(item, dict)]


def _page_token(body: dict[str, Any]) -> str:
    """The page_token of ``_pagination.next`` (a whole URL, or null on the last page)."""
    following = clean(as_dict(body.get("_pagination")).get("next"))
    if not following:
        return ""
    return (parse_qs(urlsplit(following).query).get("page_token") or [""])[-1]


HELPDESK = Helpdesk(
    kind="front",
    verify=verify,
    envelope_read=envelope_read,
    event_parse=event_parse,
    reply_request=reply_request,
    reply_remote_id=reply_remote_id,
    history_reader=FrontReader,
)
