"""Reading a Zendesk account's history: the cursor-based incremental ticket export, then each ticket's comments.

Shapes (developer.zendesk.com, "Incremental Exports" and "Ticket Comments"):
- ``GET /api/v2/incremental/tickets/cursor.json?start_time=EPOCH`` (first page) or ``?cursor=C`` (next pages):
  ``{"tickets": [...], "after_cursor": "...", "end_of_stream": bool}``; deleted tickets come with status
  ``deleted``.
- ``GET /api/v2/tickets/count.json``: ``{"count": {"value": N, "refreshed_at": ...}}`` (progress only).
- ``GET /api/v2/tickets/{id}/comments.json?include=users&page[size]=100``: ``{"comments": [...], "users": [...],
  "meta": {"has_more": bool, "after_cursor": "..."}, "links": {"next": url}}``. The first comment is the
  ticket's description.

Ids match what the Zendesk webhooks store: the customer is the requester id, the ticket its id, the first comment
is stored as ``description`` (a ``ticket.created`` event's message), every other comment by its comment id.
Credentials: ``outbound_credentials`` ``email`` + ``api_token`` (Basic), or ``oauth_token`` (Bearer).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from tickets.history_http import HistoryClient, ImportAuthError, ImportSourceError
from tickets.imports import HistoryPage, ItemError, history_reader_register
from tickets.models import Integration
from tickets.parsers import (
    CustomerRef,
    MessageData,
    NormalisedEvent,
    PayloadError,
    _channel,
    _priority,
    _s,
    _status,
    _time,
    html_to_text,
)

EXPORT_PATH = "/api/v2/incremental/tickets/cursor.json"
STAFF_ROLES = frozenset({"agent", "admin"})


class ZendeskReader:
    def __init__(self, integration: Integration, *, per_page: int = 1000) -> None:
        self.base = (integration.outbound_base_url or "").rstrip("/")
        if not self.base:
            raise ImportSourceError("the Zendesk integration needs outbound_base_url (https://SUBDOMAIN.zendesk.com)")
        self.headers = _auth_headers(integration.outbound_credentials or {})
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
            after = _s(body.get("after_cursor"))
            done = bool(body.get("end_of_stream")) or not after
            yield HistoryPage(items=tickets, next_cursor=after or cursor, done=done, total=total)
            if done:
                return
            cursor = after

    def _count(self) -> int | None:
        """The account's ticket count (``GET /api/v2/tickets/count.json``), for the progress bar and the ETA."""
        body = self.client.get(self.base + "/api/v2/tickets/count.json")
        value = _mapping(_mapping(body).get("count")).get("value")
        return value if isinstance(value, int) and value >= 0 else None

    def item_key(self, item: Any) -> tuple[str, datetime | None]:
        try:
            updated = _time(item.get("updated_at"))
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
        ticket_id = _s(item.get("id"))
        requester = _s(item.get("requester_id"))
        if not ticket_id or not requester:
            raise PayloadError("ticket without id or requester_id")
        comments, users = self._comments(ticket_id)
        person = users.get(requester, {})
        messages = []
        for position, comment in enumerate(comments):
            author = _s(comment.get("author_id"))
            role = "customer" if author == requester else _author_role(users.get(author, {}))
            body = _s(comment.get("plain_body")) or html_to_text(_s(comment.get("html_body") or comment.get("body")))
            messages.append(
                MessageData(
                    external_id="description" if position == 0 else _s(comment.get("id")),
                    body=body,
                    author_role=role,
                    author_name=_s(users.get(author, {}).get("name")),
                    is_public=bool(comment.get("public", True)),
                    created_at=_time(comment.get("created_at")),
                )
            )
        return NormalisedEvent(
            event_type="import.zendesk",
            customer=CustomerRef(
                external_id=requester, name=_s(person.get("name")), email=_s(person.get("email")).lower()
            ),
            ticket_external_id=ticket_id,
            subject=_s(item.get("subject")) or None,
            status=_status(item.get("status")),
            priority=_priority(item.get("priority")),
            channel=_channel((item.get("via") or {}).get("channel") if isinstance(item.get("via"), dict) else None),
            tags=[_s(tag) for tag in item.get("tags") or [] if _s(tag)],
            created_at=_time(item.get("created_at")),
            updated_at=_time(item.get("updated_at")),
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
            users.update({_s(u.get("id")): u for u in body.get("users") or [] if isinstance(u, dict)})
            meta = _mapping(body.get("meta"))
            links = _mapping(body.get("links"))
            url = _s(links.get("next")) if meta.get("has_more") else None
            params = None  # the next link carries its own query
        comments.sort(key=lambda c: (_s(c.get("created_at")), _s(c.get("id")).zfill(20)))
        return comments, users

    def close(self) -> None:
        self.client.close()


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _author_role(user: Mapping[str, Any]) -> str:
    return "staff" if _s(user.get("role")) in STAFF_ROLES else "customer"


def _auth_headers(credentials: Mapping[str, Any]) -> dict[str, str]:
    if credentials.get("oauth_token"):
        return {"Authorization": f"Bearer {credentials['oauth_token']}"}
    email, token = _s(credentials.get("email")), _s(credentials.get("api_token"))
    if not email or not token:
        raise ImportAuthError("the Zendesk integration needs credentials: email and api_token, or oauth_token")
    return {"Authorization": "Basic " + base64.b64encode(f"{email}/token:{token}".encode()).decode()}


history_reader_register(Integration.Kind.ZENDESK, ZendeskReader)
