"""Freshdesk: unsigned automation webhooks (the URL token authenticates), admin-written placeholder bodies."""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tickets.helpdesks import standard
from tickets.helpdesks.base import (
    CustomerRef,
    Envelope,
    Helpdesk,
    MessageData,
    NormalisedEvent,
    Payload,
    PayloadError,
    as_dict,
    as_list,
    body_hash,
    channel_word,
    clean,
    digest_id,
    html_extract,
    need,
    priority_word,
    require_header,
    role_word,
    same,
    status_word,
    when,
)
from tickets.helpdesks.history import HistoryClient, HistoryPage, ImportAuthError, ImportSourceError, ItemError

if TYPE_CHECKING:
    from tickets.models import Integration


# ---------------------------------------------------------------- signature


def verify(headers: Mapping[str, str], body: bytes, secret: str, now: float) -> None:
    """Freshdesk signs nothing: the per-integration URL token authenticates it (checked before we get here).
    With a secret configured, the admin-defined ``X-Webhook-Token`` header must carry it as well."""
    if secret:
        same(secret, require_header(headers, "x-webhook-token"))


# ---------------------------------------------------------------- payloads


_EVENT = re.compile(
    r"^\{?\s*([\w.]+)\s*:\s*(?:\{\s*from\s*:\s*([^,}]*?)\s*,\s*to\s*:\s*([^}]*?)\s*\}|([^{}]*?))\s*\}?$"
)
# Freshdesk's numeric ids, as ``{{triggered_event}}`` renders them (``{status:{from:2,to:4}}``).
_STATUS_IDS = {"2": "open", "3": "pending", "4": "resolved", "5": "closed", "6": "pending", "7": "pending"}
_PRIORITY_IDS = {"1": "low", "2": "medium", "3": "high", "4": "urgent"}
# ``{{ticket.latest_public_comment}}`` renders as "Commenter Name : <html>".
_COMMENT = re.compile(r"^\s*([^:<>\n]{1,120}?)\s+:\s+(.*)$", re.DOTALL)


def _hook(payload: Payload) -> dict[str, Any]:
    """The classic automation body wraps the placeholders in ``freshdesk_webhook``; newer ones are flat."""
    return as_dict(payload.get("freshdesk_webhook")) or payload


def event_name(raw: str) -> tuple[str, str, str]:
    """``{priority:{from:3,to:1}}`` -> ("priority", "3", "1"); ``{ticket_action:created}`` -> (…, "", "created")."""
    match = _EVENT.match(raw.strip())
    if not match:
        return raw.strip("{} "), "", ""
    field, old, new, value = match.groups()
    return field, (old or "").strip(), (new if new is not None else value or "").strip()


def envelope_read(headers: Mapping[str, str], payload: Payload, raw: bytes) -> Envelope:
    hook = _hook(payload)
    field, old, new = event_name(clean(hook.get("triggered_event")))
    if not field:
        event_type = "ticket.updated"
    else:
        event_type = f"{field}:{old}->{new}" if old else f"{field}:{new}" if new else field
    return Envelope(event_type, body_hash(raw), bool(hook.get("ticket_id")))


def _comment(hook: dict[str, Any], key: str, requester_name: str, public: bool) -> MessageData | None:
    rendered = clean(hook.get(key))
    if not rendered:
        return None
    author = clean(hook.get("comment_author_name"))
    match = _COMMENT.match(rendered)
    if match and not author:
        author, rendered = match.group(1).strip(), match.group(2)
    extracted = html_extract(rendered)
    if not extracted.text:
        return None
    default_role = "customer" if author and author == requester_name and public else "staff"
    return MessageData(
        external_id=clean(hook.get("comment_id")) or digest_id("comment-", extracted.text),
        body=extracted.text,
        author_role=role_word(hook.get("comment_author_role"), default_role),
        author_name=author,
        is_public=public,
        links=extracted.links,
    )


def event_parse(event_type: str, headers: Mapping[str, str], payload: Payload) -> NormalisedEvent:
    hook = _hook(payload)
    ticket_id = need(hook.get("ticket_id"), "freshdesk_webhook.ticket_id")
    email = clean(hook.get("requester_email")).lower()
    requester_name = clean(hook.get("requester_name"))
    messages = []
    description = html_extract(clean(hook.get("ticket_description")))
    if description.text:
        # Every description has the same id: an edited one replaces what we stored.
        messages.append(
            MessageData(
                external_id="description",
                body=description.text,
                author_role="customer",
                author_name=requester_name,
                links=description.links,
                replaces=True,
            )
        )
    for key, public in (("ticket_latest_public_comment", True), ("ticket_latest_private_comment", False)):
        comment = _comment(hook, key, requester_name, public)
        if comment:
            messages.append(comment)
    field, _, new = event_name(clean(hook.get("triggered_event")))
    status = status_word(hook.get("ticket_status")) or (
        status_word(_STATUS_IDS.get(new)) if field == "status" else None
    )
    priority = priority_word(hook.get("ticket_priority")) or (
        priority_word(_PRIORITY_IDS.get(new)) if field == "priority" else None
    )
    tags = hook.get("ticket_tags")
    tag_list = tags if isinstance(tags, list) else clean(tags).split(",")
    return NormalisedEvent(
        event_type=event_type,
        customer=CustomerRef(
            external_id=clean(hook.get("requester_id")) or need(email, "requester_id or requester_email"),
            name=requester_name,
            email=email,
        ),
        ticket_external_id=ticket_id,
        subject=clean(hook.get("ticket_subject")) or None,
        status=status,
        priority=priority,
        tags=[clean(t) for t in tag_list if clean(t)] or None,
        updated_at=_lenient_time(hook.get("ticket_updated_at")),
        messages=messages,
    )


def _lenient_time(value: Any) -> datetime | None:
    """Placeholders render dates in the account's display format; an unreadable one is no reason to fail."""
    try:
        return when(value)
    except PayloadError:
        return None


# ---------------------------------------------------------------- replies

# Replies go out as a Standard Webhooks POST to a receiver the organisation runs (see ``standard``).
reply_request = standard.reply_request


# ---------------------------------------------------------------- history (tickets.imports)
#
# Freshdesk API v2 (developers.freshdesk.com/api: "List All Tickets", "List All Conversations of a Ticket",
# "List All Agents", "Pagination", "Rate Limit"):
# - GET /api/v2/tickets?updated_since=ISO&order_by=updated_at&order_type=asc&per_page=100&page=N
#   &include=requester,description: a JSON array of tickets (id, subject, description (HTML), status 2-7, priority
#   1-4, source, requester_id, requester {id, name, email, mobile, phone}, tags, spam, created_at, updated_at);
#   `Link: <url>; rel="next"` while more pages follow. Without updated_since only tickets created in the last 30
#   days are listed, so it is always sent (the epoch without --since); accounts created after November 2018 get the
#   description only with include=description. Deleted and spam tickets are not listed (spam is skipped if it is).
#   Page numbers stop at 300: after page 300 the list goes on from updated_since = the newest updated_at read, page
#   1 (tickets updated in that same second are listed again and stored once).
# - GET /api/v2/tickets/{id}/conversations?per_page=100&page=N (Link header likewise): replies and notes (id, body
#   (HTML), body_text, incoming, private, user_id, source, created_at). The ticket's description is its first
#   message; private notes are internal.
# - GET /api/v2/agents?per_page=100&page=N (Link header) once, for the names on agents' replies and notes.
# - X-RateLimit-Remaining on every answer; a 429 carries Retry-After (seconds).
# Ids match what the documented automation webhook stores (docs/webhooks.md, tickets/tests fixtures): the ticket id;
# the customer is the requester's email (the template carries requester_email, not the requester id; a contact
# without an email is its requester id); the description is "description"; a reply or note gets the id the webhook
# parser derives from its text (Freshdesk has no placeholder for a comment's id), and a repeat of the same text in
# one ticket that id with "-2", "-3" after it.
# Credentials: api_key (Basic api_key:X) and domain ("acme", "acme.freshdesk.com" or a URL) in
# outbound_credentials. outbound_base_url is where Freshdesk replies are posted (a Standard Webhooks receiver),
# so it names the API only when it is a *.freshdesk.com address.

TICKETS_PATH = "/api/v2/tickets"
MAX_PAGES = 300  # the List All Tickets endpoint answers 400 beyond this page
FROM_THE_START = "1970-01-01T00:00:00Z"
_SOURCES = {1: "email", 2: "web", 3: "phone", 7: "chat", 9: "widget", 10: "email"}
_NEXT = re.compile(r"<([^>]*)>\s*;\s*rel=\"?next\"?")


class FreshdeskReader:
    def __init__(self, integration: Integration, *, per_page: int = 100, max_pages: int = MAX_PAGES) -> None:
        creds = integration.outbound_credentials or {}
        api_key = clean(creds.get("api_key"))
        if not api_key:
            raise ImportAuthError("the Freshdesk integration needs credentials: api_key (and domain)")
        self.base = _api_base(clean(creds.get("domain")), integration.outbound_base_url or "")
        self.headers = {"Authorization": "Basic " + base64.b64encode(f"{api_key}:X".encode()).decode()}
        self.per_page, self.max_pages = per_page, max_pages
        self.client = HistoryClient(vendor="Freshdesk", auth=lambda: self.headers)
        self.agents: dict[str, str] | None = None
        self.agents_lock = threading.Lock()

    def pages(self, *, cursor: str, since: datetime | None) -> Iterator[HistoryPage]:
        state = _cursor_read(cursor) if cursor else {"since": _iso(since) if since else FROM_THE_START, "page": 1}
        while True:
            params = {
                "updated_since": state["since"],
                "order_by": "updated_at",
                "order_type": "asc",
                "per_page": self.per_page,
                "page": state["page"],
                "include": "requester,description",
            }
            body, headers = self.client.get_with_headers(self.base + TICKETS_PATH, params)
            if not isinstance(body, list):
                raise ImportSourceError("Freshdesk's ticket list answered without a list of tickets")
            listed = [t for t in body if isinstance(t, dict)]
            more = bool(_NEXT.search(headers.get("link", "")))
            following = self._following(state, listed) if more else state
            items = [t for t in listed if not t.get("spam") and not t.get("deleted")]
            yield HistoryPage(items=items, next_cursor=json.dumps(following), done=not more)
            if not more:
                return
            state = following

    def _following(self, state: dict[str, Any], listed: list[dict[str, Any]]) -> dict[str, Any]:
        if state["page"] < self.max_pages:
            return {"since": state["since"], "page": state["page"] + 1}
        stamps = [t for t in (_lenient_time(t.get("updated_at")) for t in listed) if t is not None]
        newest = _iso(max(stamps)) if stamps else ""
        if not newest or newest <= state["since"]:
            raise ImportSourceError(
                f"Freshdesk lists more than {self.max_pages} pages of tickets updated at {state['since']}: "
                "the list cannot go on past its page limit"
            )
        return {"since": newest, "page": 1}

    def item_key(self, item: Any) -> tuple[str, datetime | None]:
        return f"ticket {item.get('id')}", _lenient_time(item.get("updated_at"))

    def ticket(self, item: Any) -> NormalisedEvent:
        where = f"ticket {item.get('id')}"
        try:
            return self._ticket(item)
        except PayloadError as exc:
            raise ItemError(where, str(exc)) from None

    def _ticket(self, item: dict[str, Any]) -> NormalisedEvent:
        ticket_id = need(item.get("id"), "ticket id")
        requester = as_dict(item.get("requester"))
        requester_id = clean(item.get("requester_id") or requester.get("id"))
        email = clean(requester.get("email")).lower()
        if not email and not requester_id:
            raise PayloadError("ticket without requester_id or requester email")
        name = clean(requester.get("name"))
        messages = []
        description = html_extract(clean(item.get("description"))) if item.get("description") else None
        text = description.text if description else clean(item.get("description_text"))
        if text:
            messages.append(
                MessageData(
                    external_id="description",
                    body=text,
                    author_role="customer",
                    author_name=name,
                    created_at=when(item.get("created_at")),
                    links=description.links if description else [],
                )
            )
        repeats: dict[str, int] = {}
        for conversation in self._conversations(ticket_id):
            message = self._message(conversation, requester_id, name)
            if message is None:
                continue
            repeats[message.external_id] = count = repeats.get(message.external_id, 0) + 1
            messages.append(replace(message, external_id=f"{message.external_id}-{count}") if count > 1 else message)
        status = item.get("status")
        priority = item.get("priority")
        return NormalisedEvent(
            event_type="import.freshdesk",
            customer=CustomerRef(external_id=email or requester_id, name=name, email=email),
            ticket_external_id=ticket_id,
            subject=clean(item.get("subject")) or None,
            status=status_word(_STATUS_IDS.get(clean(status), status)),
            priority=priority_word(_PRIORITY_IDS.get(clean(priority), priority)),
            channel=channel_word(_SOURCES.get(source) if isinstance(source := item.get("source"), int) else None),
            tags=[clean(tag) for tag in as_list(item.get("tags")) if clean(tag)],
            created_at=when(item.get("created_at")),
            updated_at=when(item.get("updated_at")),
            messages=messages,
        )

    def _message(self, conversation: dict[str, Any], requester_id: str, requester_name: str) -> MessageData | None:
        html = clean(conversation.get("body"))
        extracted = html_extract(html) if html else html_extract(clean(conversation.get("body_text")))
        if not extracted.text:
            return None
        private = bool(conversation.get("private"))
        author = clean(conversation.get("user_id"))
        by_customer = not private and (author == requester_id or bool(conversation.get("incoming")))
        return MessageData(
            # The id the webhook parser gives the same comment (it has no comment id to go by).
            external_id=digest_id("comment-", extracted.text),
            body=extracted.text,
            author_role="customer" if by_customer else "staff",
            author_name=requester_name if author == requester_id else self._agent_name(author),
            is_public=not private,
            created_at=when(conversation.get("created_at")),
            links=extracted.links,
        )

    def _conversations(self, ticket_id: str) -> list[dict[str, Any]]:
        conversations = [c for c in self._all(f"{self.base}{TICKETS_PATH}/{ticket_id}/conversations") if c]
        conversations.sort(key=lambda c: (clean(c.get("created_at")), clean(c.get("id")).zfill(20)))
        return conversations

    def _agent_name(self, user_id: str) -> str:
        with self.agents_lock:
            if self.agents is None:
                self.agents = {
                    clean(agent.get("id")): clean(as_dict(agent.get("contact")).get("name"))
                    for agent in self._all(f"{self.base}/api/v2/agents")
                }
        return self.agents.get(user_id, "")

    def _all(self, url: str) -> list[dict[str, Any]]:
        """Every page of a list that Freshdesk pages by its Link header."""
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            body, headers = self.client.get_with_headers(url, {"per_page": 100, "page": page})
            if not isinstance(body, list):
                raise PayloadError(f"{urlsplit(url).path} answered without a list")
            found.extend(entry for entry in body if isinstance(entry, dict))
            if not _NEXT.search(headers.get("link", "")):
                return found
            page += 1

    def close(self) -> None:
        self.client.close()


def _api_base(domain: str, outbound_base_url: str) -> str:
    if domain:
        if "://" in domain:
            return domain.rstrip("/")
        return "https://" + (domain if "." in domain else f"{domain}.freshdesk.com")
    host = urlsplit(outbound_base_url).hostname or ""
    if host.endswith(".freshdesk.com"):
        return f"https://{host}"
    raise ImportSourceError(
        "the Freshdesk integration needs its account's domain: outbound_credentials domain (acme or acme.freshdesk.com)"
    )


def _cursor_read(cursor: str) -> dict[str, Any]:
    try:
        state = json.loads(cursor)
        return {"since": str(state["since"]), "page": int(state["page"])}
    except (ValueError, KeyError, TypeError):
        raise ImportSourceError(f"unreadable Freshdesk import checkpoint {cursor[:80]!r}") from None


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


HELPDESK = Helpdesk(
    kind="freshdesk",
    verify=verify,
    envelope_read=envelope_read,
    event_parse=event_parse,
    reply_request=reply_request,
    history_reader=FreshdeskReader,
)
