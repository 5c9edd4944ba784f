"""Intercom: ``X-Hub-Signature``, conversation notifications, replies and notes through the REST API."""

from __future__ import annotations

import hmac
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
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
    api_base,
    as_dict,
    as_list,
    bearer,
    body_hash,
    clean,
    credential,
    first_line,
    html_extract,
    html_to_text,
    is_public_reply,
    json_bytes,
    need,
    require_header,
    response_json,
    same,
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
    """HMAC-SHA1 with the app's client secret, hex, in ``X-Hub-Signature: sha1=<hex>``. No timestamp."""
    signature = require_header(headers, "x-hub-signature")
    same("sha1=" + hmac.new(secret_bytes(secret), body, "sha1").hexdigest(), signature.lower())


# ---------------------------------------------------------------- payloads


# Conversation part types that carry words a person (or a bot) wrote; the rest (assignment without a body,
# open, close, snoozed, attribute_collected, ...) are line items, kept only when they do carry a body.
_INTERNAL_PARTS = frozenset({"note", "note_and_reopen"})
_PERSON_TYPES = frozenset({"user", "lead", "contact"})


def envelope_read(headers: Mapping[str, str], payload: Payload, raw: bytes) -> Envelope:
    topic = clean(payload.get("topic"))
    item = as_dict(as_dict(payload.get("data")).get("item"))
    handled = (
        topic.startswith("conversation.") and item.get("type") == "conversation" and topic != "conversation.deleted"
    )
    return Envelope(topic, clean(payload.get("id")) or body_hash(raw), handled)


def _role(author: dict[str, Any]) -> str:
    kind = clean(author.get("type")).lower()
    if kind in _PERSON_TYPES:
        return "customer"
    return "system" if kind == "bot" else "staff"


def _message(part: dict[str, Any], fallback_time: Any, default_author: dict[str, Any]) -> MessageData | None:
    if part.get("redacted"):
        return None
    extracted = html_extract(clean(part.get("body")))
    attachments = [clean(as_dict(a).get("name")) for a in as_list(part.get("attachments")) if as_dict(a).get("name")]
    if not extracted.text and not attachments:
        return None
    author = as_dict(part.get("author")) or default_author
    return MessageData(
        external_id=need(part.get("id"), "conversation part id"),
        body=extracted.text or "(attachment: " + ", ".join(attachments) + ")",
        author_role=_role(author),
        author_name=clean(author.get("name")),
        is_public=clean(part.get("part_type")) not in _INTERNAL_PARTS,
        created_at=when(part.get("created_at") or fallback_time),
        attachments=attachments,
        links=extracted.links,
    )


def _customer(item: dict[str, Any], opening: dict[str, Any]) -> CustomerRef:
    """API 2.x names the customer in ``contacts``; 1.x (apps pinned to an old version) in ``user``."""
    author = as_dict(opening.get("author"))
    contacts = as_list(as_dict(item.get("contacts")).get("contacts"))
    contact = as_dict(contacts[0]) if contacts else {}
    user = as_dict(item.get("user")) or as_dict(item.get("customer"))
    person = contact or user
    external_id = clean(person.get("id"))
    if not external_id and clean(author.get("type")).lower() in _PERSON_TYPES:
        external_id = clean(author.get("id"))
    # The opening message's author carries name and email when the customer wrote it (2.x contacts do not).
    same_person = clean(author.get("id")) == external_id
    name = clean(person.get("name")) or (clean(author.get("name")) if same_person else "")
    email = clean(person.get("email")) or (clean(author.get("email")) if same_person else "")
    return CustomerRef(
        external_id=need(external_id, "contacts.contacts[0].id or user.id"), name=name, email=email.lower()
    )


def event_parse(event_type: str, headers: Mapping[str, str], payload: Payload) -> NormalisedEvent:
    return _conversation(event_type, as_dict(as_dict(payload.get("data")).get("item")))


def _conversation(event_type: str, item: dict[str, Any]) -> NormalisedEvent:
    """A conversation model (a webhook's ``data.item``, or ``GET /conversations/{id}``) as a ticket."""
    opening = as_dict(item.get("source")) or as_dict(item.get("conversation_message"))
    customer = _customer(item, opening)
    # A 1.x opening message names its author by id only: the customer, when the ids match.
    opening_author = as_dict(opening.get("author"))
    if opening_author.get("id") and clean(opening_author.get("id")) == customer.external_id:
        opening_author = {**opening_author, "name": opening_author.get("name") or customer.name}
    parts = as_list(as_dict(item.get("conversation_parts")).get("conversation_parts"))
    messages = []
    if opening:
        first = _message({**opening, "author": opening_author}, item.get("created_at"), {})
        messages = [first] if first else []
    messages += [m for m in (_message(as_dict(p), item.get("updated_at"), {}) for p in parts) if m]
    state = clean(item.get("state")) or ("open" if item.get("open") else "closed")
    opening_text = html_to_text(clean(opening.get("body")))
    return NormalisedEvent(
        event_type=event_type,
        customer=customer,
        ticket_external_id=need(item.get("id"), "data.item.id"),
        # Chats have no subject: the opening message's first line stands in for one.
        subject=html_to_text(clean(opening.get("subject"))) or first_line(opening_text),
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
API_VERSION = "2.11"


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
    headers = {**bearer(integration, "access_token"), "Intercom-Version": API_VERSION}
    url = f"{api_base(integration, API_BASE)}/conversations/{ticket_external_id(delivery)}/reply"
    return OutboundRequest("POST", url, body, headers)


def reply_remote_id(response: httpx.Response) -> str:
    parts = as_list(as_dict(response_json(response).get("conversation_parts")).get("conversation_parts"))
    return clean(parts[-1].get("id")) if parts and isinstance(parts[-1], dict) else ""


# ---------------------------------------------------------------- history (tickets.imports)
#
# Conversations through the REST API (developers.intercom.com, "Search conversations", "Retrieve a conversation",
# "Pagination", "Rate limiting"), with the same Intercom-Version header as replies:
# - POST /conversations/search {"query": {"field": "updated_at", "operator": ">", "value": EPOCH},
#   "pagination": {"per_page": N, "starting_after": C}}: {"type": "conversation.list", "conversations": [...],
#   "total_count": N, "pages": {"type": "pages", "page": P, "per_page": N, "total_pages": T,
#   "next": {"per_page": N, "starting_after": "WzE..."}}}; no "next" on the last page. ">" means "at or after"
#   for dates; per_page is at most 150. The search is the API's own updated-since filter (the plain
#   GET /conversations list has none), and with value 0 it lists every conversation.
# - GET /conversations/{id}: the conversation model a webhook's data.item carries: "source" (the opening message,
#   author type user/lead/contact for a customer, admin for a teammate), "contacts": {"contacts": [{"id": ...}]},
#   "conversation_parts": {"conversation_parts": [{"id", "part_type", "body" (HTML), "author": {"type", "id",
#   "name"}, "created_at", "redacted"}]}, "state" open/closed/snoozed. At most the 500 latest parts are returned.
# - Rate limits: X-RateLimit-Limit / X-RateLimit-Remaining / X-RateLimit-Reset (epoch seconds); 429 when spent.
# Ids match what the webhooks store, because both go through ``_conversation``: the customer is the first
# contact's id, the ticket the conversation id, the opening message the source id, every part its part id;
# notes (part_type note) are internal, parts without words (assignments, closes without a body) and redacted
# parts are skipped. Credentials: outbound_credentials access_token (Bearer); base https://api.intercom.io
# (outbound_base_url for the EU/AU hosts).

SEARCH_PATH = "/conversations/search"
PER_PAGE_MAX = 150


class IntercomReader:
    def __init__(self, integration: Integration, *, per_page: int = PER_PAGE_MAX) -> None:
        self.base = (integration.outbound_base_url or API_BASE).rstrip("/")
        token = clean((integration.outbound_credentials or {}).get("access_token"))
        if not token:
            raise ImportAuthError("the Intercom integration needs credentials: access_token")
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Intercom-Version": API_VERSION,
            "Accept": "application/json",
        }
        self.per_page = max(1, min(per_page, PER_PAGE_MAX))
        self.client = HistoryClient(vendor="Intercom", auth=lambda: self.headers)

    def pages(self, *, cursor: str, since: datetime | None) -> Iterator[HistoryPage]:
        start = int(since.timestamp()) if since is not None else 0
        query = {"field": "updated_at", "operator": ">", "value": start}
        while True:
            pagination: dict[str, Any] = {"per_page": self.per_page}
            if cursor:
                pagination["starting_after"] = cursor
            body = self.client.post(self.base + SEARCH_PATH, {"query": query, "pagination": pagination})
            if not isinstance(body, dict) or not isinstance(body.get("conversations"), list):
                raise ImportSourceError("Intercom's conversation search answered without a conversations list")
            conversations = [c for c in body["conversations"] if isinstance(c, dict)]
            total = body.get("total_count")
            after = clean(as_dict(as_dict(body.get("pages")).get("next")).get("starting_after"))
            yield HistoryPage(
                items=conversations,
                next_cursor=after or cursor,
                done=not after,
                total=total if isinstance(total, int) and total >= 0 else None,  # of the search, so of --since too
            )
            if not after:
                return
            cursor = after

    def item_key(self, item: Any) -> tuple[str, datetime | None]:
        updated = item.get("updated_at")
        stamp = datetime.fromtimestamp(updated, tz=UTC) if isinstance(updated, int | float) else None
        return f"conversation {item.get('id')}", stamp

    def ticket(self, item: Any) -> NormalisedEvent:
        where = f"conversation {item.get('id')}"
        try:
            conversation_id = need(item.get("id"), "conversation id")
            body = self.client.get(f"{self.base}/conversations/{conversation_id}")
            if not isinstance(body, dict) or clean(body.get("id")) != conversation_id:
                raise PayloadError("the conversation answer is not that conversation")
            return _conversation("import.intercom", body)
        except PayloadError as exc:
            raise ItemError(where, str(exc)) from None

    def close(self) -> None:
        self.client.close()


HELPDESK = Helpdesk(
    kind="intercom",
    verify=verify,
    envelope_read=envelope_read,
    event_parse=event_parse,
    reply_request=reply_request,
    reply_remote_id=reply_remote_id,
    history_reader=IntercomReader,
)
