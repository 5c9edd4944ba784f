"""Agent replies back to the helpdesk: one request builder per vendor, retries with backoff, every attempt logged.

A delivery is claimed in a short transaction (attempt counted, ``next_attempt_at`` pushed past the request
timeout) and the HTTP call happens outside any transaction, so a slow helpdesk never holds a row lock.
Retryable failures (network errors, 408, 429, 5xx) back off with jitter; anything else (401, 404, missing
configuration) is dead at once and can be replayed from the admin after the configuration is fixed.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from tickets.intake import backoff_seconds
from tickets.models import CustomerIdentity, Integration, OutboundAttempt, OutboundDelivery, TicketMessage
from tickets.webhooks import SignatureError, standard_sign

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT = 15.0
_IN_FLIGHT = timedelta(seconds=REQUEST_TIMEOUT * 4)
_RETRYABLE = {408, 425, 429}
DEFAULT_BASES = {
    "intercom": "https://api.intercom.io",
    "helpscout": "https://api.helpscout.net",
    "front": "https://api2.frontapp.com",
}


class OutboundConfigError(Exception):
    """The integration cannot send this reply as configured (no URL, no credentials, no ticket id)."""


@dataclass(frozen=True)
class OutboundRequest:
    method: str
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeliveryResult:
    status: str
    retry_in: float | None = None


def max_attempts() -> int:
    return int(getattr(settings, "SUPPORTMEM_OUTBOUND_MAX_ATTEMPTS", 6))


def retry_base_seconds() -> float:
    return float(getattr(settings, "SUPPORTMEM_OUTBOUND_RETRY_BASE_SECONDS", 30))


# ---------------------------------------------------------------- creating deliveries


def outbound_wanted(integration: Integration | None) -> bool:
    """An integration set up for intake only (no outbound URL, no credentials) sends nothing back."""
    return bool(
        integration is not None
        and integration.is_active
        and (integration.outbound_base_url or integration.outbound_credentials)
    )


def outbound_delivery_create(*, message: TicketMessage) -> OutboundDelivery | None:
    """The delivery for an agent reply (one per message, however often this is called); None if none is due."""
    ticket = message.ticket
    integration = ticket.integration if ticket is not None else None
    if integration is None or not outbound_wanted(integration):
        return None
    try:
        with transaction.atomic():
            delivery, created = OutboundDelivery.objects.get_or_create(
                message=message,
                defaults={
                    "organization_id": message.organization_id,
                    "integration": integration,
                    "reply_mode": integration.reply_mode,
                    "next_attempt_at": timezone.now(),
                },
            )
    except IntegrityError:
        return OutboundDelivery.objects.get(message=message)
    if created:
        from tickets.tasks import dispatch, outbound_deliver_task  # tasks import this module

        transaction.on_commit(lambda: dispatch(outbound_deliver_task, delivery.pk))
    return delivery


# ---------------------------------------------------------------- request builders


def _json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _credential(integration: Integration, name: str) -> str:
    value = str((integration.outbound_credentials or {}).get(name) or "")
    if not value:
        raise OutboundConfigError(f"{integration.kind} outbound needs credential {name!r}")
    return value


def _base(integration: Integration) -> str:
    base = integration.outbound_base_url or DEFAULT_BASES.get(integration.kind, "")
    if not base:
        raise OutboundConfigError(f"{integration.kind} outbound needs outbound_base_url")
    return base.rstrip("/")


def _ticket_id(delivery: OutboundDelivery) -> str:
    ticket = delivery.message.ticket
    if ticket is None or not ticket.external_id:
        raise OutboundConfigError("the reply's ticket has no helpdesk id")
    return ticket.external_id


def _bearer(integration: Integration, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {_credential(integration, name)}"}


def _zendesk(delivery: OutboundDelivery) -> OutboundRequest:
    integration = delivery.integration
    creds = integration.outbound_credentials or {}
    if creds.get("oauth_token"):
        auth = f"Bearer {creds['oauth_token']}"
    else:
        pair = f"{_credential(integration, 'email')}/token:{_credential(integration, 'api_token')}"
        auth = "Basic " + base64.b64encode(pair.encode()).decode()
    public = delivery.reply_mode == Integration.ReplyMode.PUBLIC
    body = _json({"ticket": {"comment": {"body": delivery.message.body, "public": public}}})
    url = f"{_base(integration)}/api/v2/tickets/{_ticket_id(delivery)}.json"
    return OutboundRequest("PUT", url, body, {"Authorization": auth})


def _intercom(delivery: OutboundDelivery) -> OutboundRequest:
    integration = delivery.integration
    body = _json(
        {
            "message_type": "comment" if delivery.reply_mode == Integration.ReplyMode.PUBLIC else "note",
            "type": "admin",
            "admin_id": _credential(integration, "admin_id"),
            "body": delivery.message.body,
        }
    )
    headers = {**_bearer(integration, "access_token"), "Intercom-Version": "2.11"}
    return OutboundRequest("POST", f"{_base(integration)}/conversations/{_ticket_id(delivery)}/reply", body, headers)


def _helpscout(delivery: OutboundDelivery) -> OutboundRequest:
    integration = delivery.integration
    url = f"{_base(integration)}/v2/conversations/{_ticket_id(delivery)}"
    if delivery.reply_mode != Integration.ReplyMode.PUBLIC:
        return OutboundRequest(
            "POST", url + "/notes", _json({"text": delivery.message.body}), _bearer(integration, "access_token")
        )
    identity = CustomerIdentity.objects.filter(customer_id=delivery.message.customer_id, source="helpscout").first()
    if identity is None or not identity.external_id.isdigit():
        raise OutboundConfigError("a Help Scout reply needs the customer's Help Scout id")
    payload: dict[str, Any] = {"customer": {"id": int(identity.external_id)}, "text": delivery.message.body}
    if (integration.outbound_credentials or {}).get("user_id"):
        payload["user"] = int(integration.outbound_credentials["user_id"])
    return OutboundRequest("POST", url + "/reply", _json(payload), _bearer(integration, "access_token"))


def _front(delivery: OutboundDelivery) -> OutboundRequest:
    integration = delivery.integration
    payload: dict[str, Any] = {"body": delivery.message.body}
    if (integration.outbound_credentials or {}).get("author_id"):
        payload["author_id"] = integration.outbound_credentials["author_id"]
    path = "messages" if delivery.reply_mode == Integration.ReplyMode.PUBLIC else "comments"
    url = f"{_base(integration)}/conversations/{_ticket_id(delivery)}/{path}"
    return OutboundRequest("POST", url, _json(payload), _bearer(integration, "api_token"))


def _standard(delivery: OutboundDelivery) -> OutboundRequest:
    """A generic Standard Webhooks POST; the id is stable across retries so the receiver can deduplicate."""
    integration, message = delivery.integration, delivery.message
    secret = (integration.outbound_credentials or {}).get("webhook_secret") or integration.signing_secret
    if not str(secret).startswith("whsec_"):
        raise OutboundConfigError("standard outbound needs a whsec_ secret (outbound_credentials.webhook_secret)")
    ticket = message.ticket
    body = _json(
        {
            "type": "message.created",
            "timestamp": message.created_at.isoformat(),
            "data": {
                "ticket": {"id": _ticket_id(delivery), "subject": ticket.subject if ticket else ""},
                "customer": {"id": message.customer_id, "email": message.customer.email, "name": message.customer.name},
                "message": {
                    "id": str(message.pk),
                    "body": message.body,
                    "author_role": message.author_role,
                    "public": delivery.reply_mode == Integration.ReplyMode.PUBLIC,
                    "created_at": message.created_at.isoformat(),
                },
            },
        }
    )
    msg_id, stamp = f"msg_supportmem_{delivery.pk}", int(time.time())
    try:
        signature = standard_sign(str(secret), msg_id, stamp, body)
    except SignatureError as exc:
        raise OutboundConfigError(str(exc)) from None
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(stamp), "webhook-signature": signature}
    if not integration.outbound_base_url:
        raise OutboundConfigError("standard outbound needs outbound_base_url (the receiver's URL)")
    return OutboundRequest("POST", integration.outbound_base_url, body, headers)


BUILDERS: dict[str, Callable[[OutboundDelivery], OutboundRequest]] = {
    "zendesk": _zendesk,
    "intercom": _intercom,
    "helpscout": _helpscout,
    "front": _front,
    "freshdesk": _standard,
    "standard": _standard,
}


def _remote_id(kind: str, response: httpx.Response) -> str:
    """The helpdesk's id for the posted reply, so its webhook echo of our own reply is not stored twice."""
    if kind == "helpscout":
        return response.headers.get("resource-id", "")
    try:
        data = response.json()
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    if kind == "zendesk":
        events = (data.get("audit") or {}).get("events") or []
        return next((str(e.get("id")) for e in events if isinstance(e, dict) and e.get("type") == "Comment"), "")
    if kind == "intercom":
        parts = (data.get("conversation_parts") or {}).get("conversation_parts") or []
        return str(parts[-1].get("id", "")) if parts and isinstance(parts[-1], dict) else ""
    return str(data.get("id") or data.get("message_uid") or "") if kind == "front" else ""


# ---------------------------------------------------------------- delivering


def outbound_deliver(*, delivery_id: int) -> DeliveryResult:
    """One attempt at one delivery, if it is due. The caller schedules ``retry_in`` (the sweeper also will)."""
    delivery = _delivery_claim(delivery_id)
    if delivery is None:
        return DeliveryResult("skipped")
    started = time.monotonic()
    try:
        request = BUILDERS[delivery.integration.kind](delivery)
    except (OutboundConfigError, ValueError, TypeError, KeyError) as exc:  # e.g. a non-numeric user_id
        _attempt_log(
            delivery,
            OutboundRequest("POST", delivery.integration.outbound_base_url or "", b""),
            None,
            str(exc),
            started,
        )
        return _delivery_settle(delivery, ok=False, retryable=False, error=str(exc))
    try:
        response = httpx.request(
            request.method,
            request.url,
            content=request.body,
            headers={"Content-Type": "application/json", "Accept": "application/json", **request.headers},
            timeout=REQUEST_TIMEOUT,
        )
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        error = f"{type(exc).__name__}: {exc}"
        _attempt_log(delivery, request, None, error, started)
        # A malformed URL will not heal by itself; a network error may.
        return _delivery_settle(delivery, ok=False, retryable=isinstance(exc, httpx.HTTPError), error=error)
    _attempt_log(delivery, request, response, "", started)
    if response.is_success:
        return _delivery_settle(delivery, ok=True, remote_id=_remote_id(delivery.integration.kind, response))
    retryable = response.status_code in _RETRYABLE or response.status_code >= 500
    return _delivery_settle(
        delivery,
        ok=False,
        retryable=retryable,
        error=f"HTTP {response.status_code}: {response.text[:500]}",
        retry_after=_retry_after(response),
    )


def _delivery_claim(delivery_id: int) -> OutboundDelivery | None:
    now = timezone.now()
    with transaction.atomic():
        delivery = (
            OutboundDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("integration", "message__ticket", "message__customer")
            .filter(pk=delivery_id, status__in=[OutboundDelivery.Status.PENDING, OutboundDelivery.Status.FAILED])
            .filter(next_attempt_at__lte=now)
            .first()
        )
        if delivery is None:
            return None  # sent, dead, not due yet, or in flight in another worker
        if delivery.attempts >= max_attempts():  # earlier attempts died mid-request (worker killed)
            delivery.status = OutboundDelivery.Status.DEAD
            delivery.last_error = (delivery.last_error + f"\ngave up after {delivery.attempts} attempts").strip()
            delivery.save(update_fields=["status", "last_error"])
            return None
        delivery.attempts += 1
        # Past the request timeout: if this worker dies mid-request, the sweeper picks the delivery up again.
        delivery.next_attempt_at = now + _IN_FLIGHT
        delivery.save(update_fields=["attempts", "next_attempt_at"])
    return delivery


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return min(float(value), 3600.0) if value.isdigit() else None


def _attempt_log(
    delivery: OutboundDelivery, request: OutboundRequest, response: httpx.Response | None, error: str, started: float
) -> None:
    OutboundAttempt.objects.create(
        delivery=delivery,
        number=delivery.attempts,
        method=request.method,
        url=request.url[:1000],
        status_code=response.status_code if response is not None else None,
        response_excerpt=response.text[:2000] if response is not None else "",
        error=error[:2000],
        duration_ms=int((time.monotonic() - started) * 1000),
    )


def _delivery_settle(
    delivery: OutboundDelivery,
    *,
    ok: bool,
    retryable: bool = False,
    error: str = "",
    remote_id: str = "",
    retry_after: float | None = None,
) -> DeliveryResult:
    now = timezone.now()
    if ok:
        OutboundDelivery.objects.filter(pk=delivery.pk).update(
            status=OutboundDelivery.Status.SENT,
            sent_at=now,
            remote_id=remote_id[:255],
            last_error="",
            next_attempt_at=None,
        )
        _message_adopt_remote_id(delivery.message_id, remote_id)
        return DeliveryResult(OutboundDelivery.Status.SENT)
    if not retryable or delivery.attempts >= max_attempts():
        OutboundDelivery.objects.filter(pk=delivery.pk).update(
            status=OutboundDelivery.Status.DEAD, last_error=error[:4000], next_attempt_at=None
        )
        logger.warning("outbound delivery %s is dead: %s", delivery.pk, error)
        return DeliveryResult(OutboundDelivery.Status.DEAD)
    delay = max(retry_after or 0.0, backoff_seconds(delivery.attempts, base=retry_base_seconds()))
    OutboundDelivery.objects.filter(pk=delivery.pk).update(
        status=OutboundDelivery.Status.FAILED, last_error=error[:4000], next_attempt_at=now + timedelta(seconds=delay)
    )
    return DeliveryResult(OutboundDelivery.Status.FAILED, retry_in=delay)


def _message_adopt_remote_id(message_id: int, remote_id: str) -> None:
    if not remote_id:
        return
    try:
        with transaction.atomic():
            TicketMessage.objects.filter(pk=message_id, external_id="").update(external_id=remote_id[:255])
    except IntegrityError:
        logger.info("reply %s: the helpdesk's echo of it was stored first", message_id)


def outbound_deliveries_due(*, limit: int = 500) -> list[int]:
    """Deliveries whose retry time has come (or whose worker died mid-request)."""
    return list(
        OutboundDelivery.objects.filter(
            status__in=[OutboundDelivery.Status.PENDING, OutboundDelivery.Status.FAILED],
            next_attempt_at__lte=timezone.now(),
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )


def outbound_delivery_replay(*, delivery: OutboundDelivery) -> None:
    """Staff replay from the admin: try again from the first attempt's budget."""
    with transaction.atomic():
        OutboundDelivery.objects.filter(pk=delivery.pk).update(
            status=OutboundDelivery.Status.PENDING, attempts=0, last_error="", next_attempt_at=timezone.now()
        )
        from tickets.tasks import dispatch, outbound_deliver_task

        transaction.on_commit(lambda: dispatch(outbound_deliver_task, delivery.pk))
