"""Freshdesk: unsigned automation webhooks (the URL token authenticates), admin-written placeholder bodies."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

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
    body_hash,
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

if TYPE_CHECKING:
    pass


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


HELPDESK = Helpdesk(
    kind="freshdesk",
    verify=verify,
    envelope_read=envelope_read,
    event_parse=event_parse,
    reply_request=reply_request,
)
