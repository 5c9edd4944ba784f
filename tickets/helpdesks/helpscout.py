"""Help Scout: ``X-HelpScout-Signature``, conversation events, replies and notes through the Mailbox API 2.0."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

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
from tickets.helpdesks.history import HistoryClient, HistoryPage, ImportAuthError, ImportSourceError, ItemError
from tickets.models import CustomerIdentity

if TYPE_CHECKING:
    from tickets.models import Integration, OutboundDelivery


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


# ---------------------------------------------------------------- history (tickets.imports)
#
# Mailbox API 2.0 (developer.helpscout.com/mailbox-api: "Authentication", "List Conversations", "List Threads",
# "Rate limiting"):
# - POST /v2/oauth2/token with grant_type=client_credentials, client_id, client_secret (form fields):
#   {"token_type": "bearer", "access_token": "...", "expires_in": 172800}. A token lives two days, so a 401
#   mid-import fetches a new one once and retries (HistoryClient.on_unauthorized); rejected client credentials
#   are one ImportAuthError.
# - GET /v2/conversations?status=all&sortField=modifiedAt&sortOrder=asc&modifiedSince=ISO&page=N (HAL):
#   {"_embedded": {"conversations": [...]}, "page": {"size", "totalElements", "totalPages", "number"},
#   "_links": {"next": {"href": ...}}}. ``status`` defaults to active, hence "all"; spam and deleted
#   conversations are skipped.
# - GET /v2/conversations/{id}/threads (HAL, paged the same way, newest first): {"_embedded": {"threads": [...]}}.
#   customer/message/note/chat/phone threads are messages (a note is internal); line items, drafts and hidden
#   threads are not.
# - X-RateLimit-Remaining-Minute on every answer; a 429 carries X-RateLimit-Retry-After (seconds).
# Ids match the webhooks: the conversation with its threads is the payload a convo.* webhook carries (the
# conversation object with _embedded.threads) and goes through event_parse: customer = primaryCustomer.id,
# ticket = conversation id, message = thread id.
# The cursor: page numbers over a list sorted by modification drift when a conversation changes mid-import (it
# moves to the end and the next page starts one conversation later, which would never be read). So the next
# page is page 1 from the newest userUpdatedAt read so far (less a second: modifiedAt is never older than it,
# and whether modifiedSince is inclusive is not documented); conversations of the previous page that come back
# unchanged are dropped. Only a page whose conversations all sit at the bound moves on by page number.
# Credentials: client_id + client_secret (client credentials flow), or an access_token (no refresh).

TOKEN_PATH = "/v2/oauth2/token"
CONVERSATIONS_PATH = "/v2/conversations"


class HelpScoutReader:
    def __init__(self, integration: Integration) -> None:
        self.base = api_base(integration, API_BASE)
        creds = integration.outbound_credentials or {}
        self.client_id, self.client_secret = clean(creds.get("client_id")), clean(creds.get("client_secret"))
        self.token = "" if self.client_id else clean(creds.get("access_token"))
        if not self.token and not (self.client_id and self.client_secret):
            raise ImportAuthError(
                "the Help Scout integration needs credentials: client_id and client_secret (an app's client "
                "credentials), or access_token"
            )
        self.client = HistoryClient(
            vendor="Help Scout", auth=self._auth, on_unauthorized=self._refresh if self.client_id else lambda: False
        )
        # Tickets are read on several threads: the 401s of one expired token fetch one new token between them (a
        # thread whose rejected token was already replaced retries with the new one).
        self.token_lock = threading.Lock()
        self.sent = threading.local()

    # ------------------------------------------------------------ OAuth

    def _auth(self) -> dict[str, str]:
        with self.token_lock:
            if not self.token:
                self.token = self._fetch_token()
            self.sent.token = self.token
            return {"Authorization": f"Bearer {self.token}"}

    def _refresh(self) -> bool:
        with self.token_lock:
            if getattr(self.sent, "token", "") == self.token:
                self.token = self._fetch_token()
        return True

    def _fetch_token(self) -> str:
        """A new access token (client credentials flow). Rejected credentials are not retried; the network and
        5xx answers are, as for any read."""
        form = {"grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self.client_secret}
        for attempt in range(1, self.client.max_attempts + 1):
            self.client.stats.count(requests=1)
            try:
                response = httpx.post(self.base + TOKEN_PATH, data=form, timeout=self.client.timeout)
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code in (400, 401, 403):
                    raise ImportAuthError(
                        f"Help Scout rejected the credentials ({response.status_code} on {TOKEN_PATH}): "
                        f"{' '.join(response.text.split())[:200]}. Fix the integration's client_id and "
                        "client_secret and start the import again; it resumes where it stopped."
                    )
                token = clean(as_dict(_json(response)).get("access_token")) if response.status_code == 200 else ""
                if token:
                    return token
                reason = f"{response.status_code} without an access_token"
            if attempt < self.client.max_attempts:
                self.client.stats.count(retries=1)
                self.client.sleep(self.client.backoff_base * 2 ** (attempt - 1))
        raise ImportSourceError(f"Help Scout: no access token after {self.client.max_attempts} attempts ({reason})")

    # ------------------------------------------------------------ pages

    def pages(self, *, cursor: str, since: datetime | None) -> Iterator[HistoryPage]:
        state = _cursor_read(cursor) if cursor else {"since": _iso(since) if since else "", "page": 1, "seen": {}}
        first = not cursor and since is None
        while True:
            params: dict[str, Any] = {"status": "all", "sortField": "modifiedAt", "sortOrder": "asc"}
            params["page"] = state["page"]
            if state["since"]:
                params["modifiedSince"] = state["since"]
            body = as_dict(self.client.get(self.base + CONVERSATIONS_PATH, params))
            listed = as_dict(body.get("_embedded")).get("conversations", [] if "page" in body else None)
            if not isinstance(listed, list):
                raise ImportSourceError("Help Scout's conversation list answered without _embedded.conversations")
            seen: dict[str, str] = state["seen"]
            fresh = [
                c
                for c in listed
                if isinstance(c, dict) and seen.get(clean(c.get("id"))) != clean(c.get("userUpdatedAt"))
            ]
            items = [c for c in fresh if _importable(c)]
            paging = as_dict(body.get("page"))
            total = paging.get("totalElements") if first and isinstance(paging.get("totalElements"), int) else None
            # HAL names the next page; page.totalPages says the same (either is enough).
            has_next = bool(as_dict(as_dict(body.get("_links")).get("next")))
            more = has_next or state["page"] < _int(paging.get("totalPages"))
            following = _next_state(state, [c for c in listed if isinstance(c, dict)]) if more else state
            yield HistoryPage(items=items, next_cursor=json.dumps(following), done=not more, total=total)
            if not more:
                return
            state, first = following, False

    def item_key(self, item: Any) -> tuple[str, datetime | None]:
        return f"conversation {item.get('id')}", _lenient(item.get("userUpdatedAt"))

    def ticket(self, item: Any) -> NormalisedEvent:
        where = f"conversation {item.get('id')}"
        try:
            threads = self._threads(need(item.get("id"), "conversation id"))
            event = event_parse("import.helpscout", {}, {**item, "_embedded": {"threads": threads}})
        except PayloadError as exc:
            raise ItemError(where, str(exc)) from None
        return event

    def _threads(self, conversation_id: str) -> list[dict[str, Any]]:
        """Every thread of a conversation, newest first as Help Scout lists them (event_parse reverses them)."""
        url: str | None = f"{self.base}{CONVERSATIONS_PATH}/{conversation_id}/threads"
        threads: list[dict[str, Any]] = []
        while url:
            body = as_dict(self.client.get(url))
            page = as_dict(body.get("_embedded")).get("threads", [] if "page" in body else None)
            if not isinstance(page, list):
                raise PayloadError("threads answer without _embedded.threads")
            threads.extend(t for t in page if isinstance(t, dict))
            url = clean(as_dict(as_dict(body.get("_links")).get("next")).get("href")) or None
        return threads

    def close(self) -> None:
        self.client.close()


def _importable(conversation: dict[str, Any]) -> bool:
    return clean(conversation.get("status")) != "spam" and clean(conversation.get("state")) not in {"deleted", "draft"}


def _next_state(state: dict[str, Any], listed: list[dict[str, Any]]) -> dict[str, Any]:
    """The page after ``listed``: page 1 from its newest userUpdatedAt when that moves the bound forward,
    else the next page number at the same bound."""
    stamps = [t for t in (_lenient(c.get("userUpdatedAt")) for c in listed) if t is not None]
    bound = _iso(max(stamps) - timedelta(seconds=1)) if stamps else ""
    if bound and (not state["since"] or bound > state["since"]):
        seen = {clean(c.get("id")): clean(c.get("userUpdatedAt")) for c in listed}
        return {"since": bound, "page": 1, "seen": seen}
    return {"since": state["since"], "page": state["page"] + 1, "seen": state["seen"]}


def _cursor_read(cursor: str) -> dict[str, Any]:
    try:
        state = json.loads(cursor)
        return {"since": str(state["since"]), "page": int(state["page"]), "seen": dict(state.get("seen") or {})}
    except (ValueError, KeyError, TypeError):
        raise ImportSourceError(f"unreadable Help Scout import checkpoint {cursor[:80]!r}") from None


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _lenient(value: Any) -> datetime | None:
    try:
        return when(value)
    except PayloadError:
        return None


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


HELPDESK = Helpdesk(
    kind="helpscout",
    verify=verify,
    envelope_read=envelope_read,
    event_parse=event_parse,
    reply_request=reply_request,
    reply_remote_id=reply_remote_id,
    history_reader=HelpScoutReader,
)
