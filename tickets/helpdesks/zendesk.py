"""Zendesk: webhook signature, event-subscribed and trigger payloads, replies as ticket comments."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from datetime import datetime
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
    SignatureError,
    api_base,
    as_dict,
    as_list,
    b64_hmac,
    body_hash,
    channel_word,
    check_fresh,
    clean,
    credential,
    digest_id,
    html_to_text,
    is_public_reply,
    json_bytes,
    need,
    priority_word,
    require_header,
    response_json,
    role_word,
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
    """HMAC-SHA256, base64, over the signature timestamp header followed directly by the body."""
    signature = require_header(headers, "x-zendesk-webhook-signature")
    stamp = require_header(headers, "x-zendesk-webhook-signature-timestamp")
    try:
        signed_at = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError):
        raise SignatureError("unreadable x-zendesk-webhook-signature-timestamp") from None
    check_fresh(signed_at, now)
    same(b64_hmac(secret_bytes(secret), stamp.encode() + body, "sha256"), signature)


# ---------------------------------------------------------------- payloads


def envelope_read(headers: Mapping[str, str], payload: Payload, raw: bytes) -> Envelope:
    event_type = clean(payload.get("type"))
    if event_type.startswith("zen:event-type:"):
        # Event-subscribed webhooks: a fixed schema with a unique event id.
        handled = event_type.startswith("zen:event-type:ticket.")
        return Envelope(event_type, clean(payload.get("id")) or body_hash(raw), handled)
    # Trigger/automation webhooks carry an admin-written body with no event id: the body hash is the key.
    flat = _trigger_fields(payload)
    return Envelope("zendesk.trigger", body_hash(raw), bool(flat.get("ticket_id")))


def _trigger_fields(payload: Payload) -> dict[str, Any]:
    """Trigger bodies are written by the admin: flat (``ticket_id``, ``requester_email``) or nested the way the
    placeholders read (``{"ticket": {"id": "{{ticket.id}}", "requester": {"email": ...}}}``). Both become flat."""
    ticket = as_dict(payload.get("ticket"))
    if not ticket:
        return payload
    requester = as_dict(ticket.get("requester"))
    comment = as_dict(ticket.get("latest_comment"))
    flat: dict[str, Any] = {
        "ticket_id": ticket.get("id"),
        "subject": ticket.get("title") or ticket.get("subject"),
        "status": ticket.get("status"),
        "priority": ticket.get("priority"),
        "tags": ticket.get("tags"),
        "updated_at": ticket.get("updated_at"),
        "requester_id": requester.get("id") or ticket.get("requester_id"),
        "requester_email": requester.get("email") or ticket.get("requester_email"),
        "requester_name": requester.get("name") or ticket.get("requester_name"),
        "latest_comment": comment.get("body") if comment else ticket.get("latest_comment"),
        "latest_comment_id": comment.get("id"),
        "latest_comment_author_role": as_dict(comment.get("author")).get("role") or comment.get("author_role"),
        "latest_comment_author_name": as_dict(comment.get("author")).get("name") or comment.get("author_name"),
        "latest_comment_public": comment.get("public", comment.get("is_public", "")),
    }
    return {**{k: v for k, v in payload.items() if k != "ticket"}, **{k: v for k, v in flat.items() if v is not None}}


def event_parse(event_type: str, headers: Mapping[str, str], payload: Payload) -> NormalisedEvent:
    if event_type == "zendesk.trigger":
        return _trigger(payload)
    detail = as_dict(payload.get("detail"))
    ticket_id = need(detail.get("id"), "detail.id")
    updated = when(detail.get("updated_at")) or when(payload.get("time"))
    messages = []
    if event_type.endswith("ticket.created") and clean(detail.get("description")):
        messages.append(
            MessageData(
                external_id="description",
                body=html_to_text(clean(detail.get("description"))),
                author_role="customer",
                created_at=when(detail.get("created_at")),
            )
        )
    comment = as_dict(as_dict(payload.get("event")).get("comment"))
    if comment:
        author = as_dict(comment.get("author"))
        messages.append(
            MessageData(
                external_id=need(comment.get("id"), "event.comment.id"),
                body=html_to_text(need(comment.get("body"), "event.comment.body")),
                author_role="staff" if author.get("is_staff") else "customer",
                author_name=clean(author.get("name")),
                is_public=bool(comment.get("is_public", True)),
                created_at=when(payload.get("time")),
            )
        )
    return NormalisedEvent(
        event_type=event_type,
        # Ticket events other than creation may leave the requester out (an agent assignment change): the
        # ticket is then one we know, and keeps its customer.
        customer=CustomerRef(external_id=clean(detail.get("requester_id"))) if detail.get("requester_id") else None,
        ticket_external_id=ticket_id,
        subject=clean(detail.get("subject")) or None,
        status=status_word(detail.get("status")),
        priority=priority_word(detail.get("priority")),
        channel=channel_word(as_dict(detail.get("via")).get("channel")),
        tags=[clean(tag) for tag in as_list(detail.get("tags"))] if "tags" in detail else None,
        created_at=when(detail.get("created_at")),
        updated_at=updated,
        messages=messages,
    )


def _trigger(payload: Payload) -> NormalisedEvent:
    payload = _trigger_fields(payload)
    email = clean(payload.get("requester_email")).lower()
    requester = clean(payload.get("requester_id")) or need(email, "requester_id or requester_email")
    comment = clean(payload.get("latest_comment"))
    messages = []
    if comment:
        # The template decides what is sent; without an explicit author role a comment is taken as staff's,
        # so ambiguous text never makes the agent answer a colleague.
        messages.append(
            MessageData(
                external_id=clean(payload.get("latest_comment_id")) or digest_id("comment-", comment),
                body=html_to_text(comment),
                author_role=role_word(payload.get("latest_comment_author_role"), "staff"),
                author_name=clean(payload.get("latest_comment_author_name")),
                is_public=clean(payload.get("latest_comment_public")).lower() not in {"false", "0", "no"},
            )
        )
    return NormalisedEvent(
        event_type="zendesk.trigger",
        customer=CustomerRef(external_id=requester, name=clean(payload.get("requester_name")), email=email),
        ticket_external_id=need(payload.get("ticket_id"), "ticket_id"),
        subject=clean(payload.get("subject")) or None,
        status=status_word(payload.get("status")),
        priority=priority_word(payload.get("priority")),
        tags=_tags(payload["tags"]) if "tags" in payload else None,
        updated_at=_lenient_time(payload.get("updated_at")),
        messages=messages,
    )


def _tags(value: Any) -> list[str]:
    """``{{ticket.tags}}`` renders as one space-separated string; a JSON template may send a list."""
    items = value if isinstance(value, list) else clean(value).replace(",", " ").split()
    return [clean(tag) for tag in items if clean(tag)]


def _lenient_time(value: Any) -> datetime | None:
    """Placeholders render dates in the account's display format, which is not always ISO 8601: an
    unreadable one only loses the out-of-order guard for this event, never the event."""
    try:
        return when(value)
    except PayloadError:
        return None


# ---------------------------------------------------------------- replies


def reply_request(delivery: OutboundDelivery) -> OutboundRequest:
    """``PUT /api/v2/tickets/{id}.json`` with a comment, public or internal; API token or OAuth."""
    integration = delivery.integration
    creds = integration.outbound_credentials or {}
    if creds.get("oauth_token"):
        auth = f"Bearer {creds['oauth_token']}"
    else:
        pair = f"{credential(integration, 'email')}/token:{credential(integration, 'api_token')}"
        auth = "Basic " + base64.b64encode(pair.encode()).decode()
    body = json_bytes({"ticket": {"comment": {"body": delivery.message.body, "public": is_public_reply(delivery)}}})
    url = f"{api_base(integration)}/api/v2/tickets/{ticket_external_id(delivery)}.json"
    return OutboundRequest("PUT", url, body, {"Authorization": auth})


def reply_remote_id(response: httpx.Response) -> str:
    events = as_list(as_dict(response_json(response).get("audit")).get("events"))
    return next((clean(e.get("id")) for e in events if isinstance(e, dict) and e.get("type") == "Comment"), "")


# ---------------------------------------------------------------- history (tickets.imports)
#
# The cursor-based incremental ticket export, then each ticket's comments (developer.zendesk.com, "Incremental
# Exports", "Ticket Comments", "Count Tickets"):
# - GET /api/v2/incremental/tickets/cursor.json?start_time=EPOCH (first page) or ?cursor=C (next pages):
#   {"tickets": [...], "after_cursor": "...", "end_of_stream": bool}; deleted tickets come with status "deleted".
# - GET /api/v2/tickets/{id}/comments.json?include=users&page[size]=100: {"comments": [...], "users": [...],
#   "meta": {"has_more": bool, "after_cursor": "..."}, "links": {"next": url}}. The first comment is the
#   ticket's description.
# - GET /api/v2/tickets/count.json: {"count": {"value": N, "refreshed_at": ...}} (for progress only).
# Ids match what the webhooks store: the customer is the requester id, the ticket its id, the first comment is
# stored as "description" (a ticket.created event's message), every other comment by its comment id.
# Credentials: outbound_credentials email + api_token (Basic), or oauth_token (Bearer).

EXPORT_PATH = "/api/v2/incremental/tickets/cursor.json"
STAFF_ROLES = frozenset({"agent", "admin"})


class ZendeskReader:
    def __init__(self, integration: Integration, *, per_page: int = 1000) -> None:
        self.base = (integration.outbound_base_url or "").rstrip("/")
        if not self.base:
            raise ImportSourceError("the Zendesk integration needs outbound_base_url (https://SUBDOMAIN.zendesk.com)")
        self.headers = _history_auth(integration.outbound_credentials or {})
        self.per_page = per_page
        self.client = HistoryClient(vendor="Zendesk", auth=lambda: self.headers)

    def pages(self, *, cursor: str, since: datetime | None) -> Iterator[HistoryPage]:
        total = self._count() if not cursor and since is None else None
        while True:
            params: dict[str, Any] = {"per_page": self.per_page}
            if cursor:
                params["cursor"] = cursor
            else:
                params["start_time"] = int(since.timestamp()) if since is not None else 0
            body = self.client.get(self.base + EXPORT_PATH, params)
            if not isinstance(body, dict) or not isinstance(body.get("tickets"), list):
                raise ImportSourceError("Zendesk's incremental export answered without a tickets list")
            tickets = [t for t in body["tickets"] if isinstance(t, dict) and t.get("status") != "deleted"]
            after = clean(body.get("after_cursor"))
            done = bool(body.get("end_of_stream")) or not after
            yield HistoryPage(items=tickets, next_cursor=after or cursor, done=done, total=total)
            if done:
                return
            cursor = after

    def _count(self) -> int | None:
        """The account's ticket count (``GET /api/v2/tickets/count.json``), for the progress bar and the ETA."""
        body = self.client.get(self.base + "/api/v2/tickets/count.json")
        value = as_dict(as_dict(body).get("count")).get("value")
        return value if isinstance(value, int) and value >= 0 else None

    def item_key(self, item: Any) -> tuple[str, datetime | None]:
        try:
            updated = when(item.get("updated_at"))
        except PayloadError:
            updated = None
        return f"ticket {item.get('id')}", updated

    def ticket(self, item: Any) -> NormalisedEvent:
        where = f"ticket {item.get('id')}"
        try:
            return self._ticket(item)
        except PayloadError as exc:
            raise ItemError(where, str(exc)) from None

    def _ticket(self, item: dict[str, Any]) -> NormalisedEvent:
        ticket_id = clean(item.get("id"))
        requester = clean(item.get("requester_id"))
        if not ticket_id or not requester:
            raise PayloadError("ticket without id or requester_id")
        comments, users = self._comments(ticket_id)
        person = users.get(requester, {})
        messages = []
        for position, comment in enumerate(comments):
            author = clean(comment.get("author_id"))
            role = "customer" if author == requester else _author_role(users.get(author, {}))
            body = clean(comment.get("plain_body")) or html_to_text(
                clean(comment.get("html_body") or comment.get("body"))
            )
            messages.append(
                MessageData(
                    external_id="description" if position == 0 else clean(comment.get("id")),
                    body=body,
                    author_role=role,
                    author_name=clean(users.get(author, {}).get("name")),
                    is_public=bool(comment.get("public", True)),
                    created_at=when(comment.get("created_at")),
                )
            )
        return NormalisedEvent(
            event_type="import.zendesk",
            customer=CustomerRef(
                external_id=requester, name=clean(person.get("name")), email=clean(person.get("email")).lower()
            ),
            ticket_external_id=ticket_id,
            subject=clean(item.get("subject")) or None,
            status=status_word(item.get("status")),
            priority=priority_word(item.get("priority")),
            channel=channel_word((item.get("via") or {}).get("channel") if isinstance(item.get("via"), dict) else None),
            tags=[clean(tag) for tag in item.get("tags") or [] if clean(tag)],
            created_at=when(item.get("created_at")),
            updated_at=when(item.get("updated_at")),
            messages=messages,
        )

    def _comments(self, ticket_id: str) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        url: str | None = f"{self.base}/api/v2/tickets/{ticket_id}/comments.json"
        params: dict[str, Any] | None = {"include": "users", "page[size]": 100}
        comments: list[dict[str, Any]] = []
        users: dict[str, dict[str, Any]] = {}
        while url:
            body = self.client.get(url, params)
            if not isinstance(body, dict) or not isinstance(body.get("comments"), list):
                raise PayloadError("comments answer without a comments list")
            comments.extend(c for c in body["comments"] if isinstance(c, dict))
            users.update({clean(u.get("id")): u for u in body.get("users") or [] if isinstance(u, dict)})
            meta = as_dict(body.get("meta"))
            links = as_dict(body.get("links"))
            url = clean(links.get("next")) if meta.get("has_more") else None
            params = None  # the next link carries its own query
        comments.sort(key=lambda c: (clean(c.get("created_at")), clean(c.get("id")).zfill(20)))
        return comments, users

    def close(self) -> None:
        self.client.close()


def _author_role(user: Mapping[str, Any]) -> str:
    return "staff" if clean(user.get("role")) in STAFF_ROLES else "customer"


def _history_auth(credentials: Mapping[str, Any]) -> dict[str, str]:
    if credentials.get("oauth_token"):
        return {"Authorization": f"Bearer {credentials['oauth_token']}"}
    email, token = clean(credentials.get("email")), clean(credentials.get("api_token"))
    if not email or not token:
        raise ImportAuthError("the Zendesk integration needs credentials: email and api_token, or oauth_token")
    return {"Authorization": "Basic " + base64.b64encode(f"{email}/token:{token}".encode()).decode()}


HELPDESK = Helpdesk(
    kind="zendesk",
    verify=verify,
    envelope_read=envelope_read,
    event_parse=event_parse,
    reply_request=reply_request,
    reply_remote_id=reply_remote_id,
    history_reader=ZendeskReader,
)
