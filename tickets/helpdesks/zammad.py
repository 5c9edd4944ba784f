"""Zammad (open source): trigger webhooks (``X-Hub-Signature``), articles public or internal through the REST API."""

from __future__ import annotations

import hmac
import re
import threading
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
from tickets.helpdesks.history import HistoryClient, HistoryPage, ImportAuthError, ImportSourceError, ItemError

if TYPE_CHECKING:
    import httpx

    from tickets.models import Integration, OutboundDelivery


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


# ---------------------------------------------------------------- history (tickets.imports)
#
# The REST API (docs.zammad.org, API "Introduction" (auth, expand, pagination), "Tickets", "Articles", "Users";
# zammad/zammad TicketsController#index), with ``Authorization: Token token=…`` (an access token with
# ticket.agent, of an agent in every group to import) or ``Bearer`` for an OAuth token:
# - GET /api/v1/tickets?expand=true&page=N&per_page=P (P at most 100): a JSON array of tickets ordered by id,
#   so a page keeps its tickets while others are updated and the page number is the resume cursor. Zammad gives
#   no total; the list ends with an empty page. expand=true adds names beside the ids: "state" ("open",
#   "closed", "pending reminder", "merged", ...), "priority" ("2 normal"), "customer" (a login), and
#   "create_article_type". Merged tickets (their articles moved to the target) and removed ones are skipped.
#   The list has no "updated since" filter; the search endpoint has one, but it needs Elasticsearch, whose
#   from/size paging stops at 10,000 results by default, so --since is applied here to each ticket's updated_at.
# - GET /api/v1/ticket_articles/by_ticket/{id}: every article of the ticket, oldest first: "id", "body",
#   "content_type" ("text/html" from the web UI, or "text/plain"), "internal" (a note customers do not see),
#   "sender" ("Customer", "Agent", "System"), "type", "from", "created_by_id", "created_at", "attachments".
# - GET /api/v1/users/{id}: "firstname", "lastname", "email", "login"; each user is read once per import (the
#   ticket's customer and each article's author, whose name the webhooks carry in "created_by").
# Ids match the webhooks': the customer's user id, the ticket id (not its number), the article id.
# Rate limit: Zammad throttles only password resets and web-form submits (config/initializers/rack_attack.rb);
# a proxy's 429 is honoured by HistoryClient.
# Credentials: outbound_credentials api_token (or oauth_token); outbound_base_url (Zammad is self-hosted or on
# the customer's own zammad.com host: there is no default).

TICKETS_PAGE_MAX = 100
_GONE_STATES = frozenset({"merged", "removed"})


class ZammadReader:
    def __init__(self, integration: Integration, *, per_page: int = TICKETS_PAGE_MAX) -> None:
        self.base = (integration.outbound_base_url or "").rstrip("/")
        if not self.base:
            raise ImportSourceError("the Zammad integration needs outbound_base_url (https://zammad.example.com)")
        self.headers = _history_auth(integration.outbound_credentials or {})
        self.per_page = max(1, min(per_page, TICKETS_PAGE_MAX))
        self.client = HistoryClient(vendor="Zammad", auth=lambda: self.headers)
        self._users: dict[str, dict[str, Any]] = {}
        # ``ticket`` runs on several threads at once (tickets.imports reads ahead): one lock per user, so each
        # user is read once while different users are read side by side.
        self._user_locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def pages(self, *, cursor: str, since: datetime | None) -> Iterator[HistoryPage]:
        page = int(cursor or 1)
        while True:
            params = {"expand": "true", "page": page, "per_page": self.per_page}
            body = self.client.get(f"{self.base}/api/v1/tickets", params)
            if not isinstance(body, list):
                raise ImportSourceError("Zammad's ticket list answered with something other than a list")
            tickets = [t for t in body if isinstance(t, dict) and _state(t) not in _GONE_STATES]
            if since is not None:
                tickets = [t for t in tickets if (_updated(t) or since) >= since]
            done = not body
            yield HistoryPage(items=tickets, next_cursor=str(page + 1), done=done)
            if done:
                return
            page += 1

    def item_key(self, item: Any) -> tuple[str, datetime | None]:
        return f"ticket {item.get('id')}", _updated(item)

    def ticket(self, item: Any) -> NormalisedEvent:
        try:
            return self._ticket(item)
        except PayloadError as exc:
            raise ItemError(f"ticket {item.get('id')}", str(exc)) from None

    def _ticket(self, ticket: dict[str, Any]) -> NormalisedEvent:
        ticket_id = need(ticket.get("id"), "ticket id")
        customer_id = need(ticket.get("customer_id"), "ticket customer_id")
        customer = self._user(customer_id)
        body = self.client.get(f"{self.base}/api/v1/ticket_articles/by_ticket/{ticket_id}")
        if not isinstance(body, list):
            raise PayloadError("articles answer is not a list")
        messages = []
        for article in sorted(
            (a for a in body if isinstance(a, dict)), key=lambda a: (clean(a.get("created_at")), a.get("id") or 0)
        ):
            # The webhooks carry the author as a user object; the API names them by id.
            author = self._user(clean(article.get("created_by_id"))) if article.get("created_by_id") else {}
            message = _article({**article, "created_by": author})
            if message is not None:
                messages.append(message)
        state = _state(ticket)
        return NormalisedEvent(
            event_type="import.zammad",
            customer=CustomerRef(
                external_id=customer_id, name=_person_name(customer), email=clean(customer.get("email")).lower()
            ),
            ticket_external_id=ticket_id,
            subject=clean(ticket.get("title")) or None,
            status=status_word(_STATES.get(state, state)),
            priority=_priority(ticket.get("priority")),
            channel=channel_word(ticket.get("create_article_type")),
            created_at=when(ticket.get("created_at")),
            updated_at=when(ticket.get("updated_at")),
            messages=messages,
        )

    def _user(self, user_id: str) -> dict[str, Any]:
        with self._locks_lock:
            lock = self._user_locks.setdefault(user_id, threading.Lock())
        with lock:
            if user_id not in self._users:
                self._users[user_id] = as_dict(self.client.get(f"{self.base}/api/v1/users/{user_id}"))
            return self._users[user_id]

    def close(self) -> None:
        self.client.close()


def _state(ticket: Mapping[str, Any]) -> str:
    return clean(ticket.get("state") or as_dict(ticket.get("state_obj")).get("name")).lower()


def _updated(ticket: Mapping[str, Any]) -> datetime | None:
    try:
        return when(ticket.get("updated_at"))
    except PayloadError:
        return None


def _history_auth(credentials: Mapping[str, Any]) -> dict[str, str]:
    if clean(credentials.get("oauth_token")):
        return {"Authorization": f"Bearer {clean(credentials.get('oauth_token'))}"}
    token = clean(credentials.get("api_token"))
    if not token:
        raise ImportAuthError(
            "the Zammad integration needs credentials: api_token (an access token with ticket.agent) or oauth_token"
        )
    return {"Authorization": f"Token token={token}"}


HELPDESK = Helpdesk(
    kind="zammad",
    verify=verify,
    envelope_read=envelope_read,
    event_parse=event_parse,
    reply_request=reply_request,
    reply_remote_id=reply_remote_id,
    history_reader=ZammadReader,
)
