"""Agent replies back to the helpdesk: built by the helpdesk's module, retried with backoff, every attempt logged.

A delivery is claimed in a short transaction (attempt counted, ``next_attempt_at`` pushed past the request
timeout) and the HTTP call happens outside any transaction, so a slow helpdesk never holds a row lock.
Retryable failures (network errors, 408, 429, 5xx) back off with jitter; anything else (401, 404, missing
configuration) is dead at once and can be replayed from the admin after the configuration is fixed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

import httpx
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from telemetry.logs import log_scope
from telemetry.metrics import OUTBOUND_DELIVERIES
from tickets.helpdesks import HELPDESKS, OutboundConfigError, OutboundRequest
from tickets.models import Integration, OutboundAttempt, OutboundDelivery, TicketMessage
from tickets.tasks import dispatch, outbound_deliver_task

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT = 15.0
_IN_FLIGHT = timedelta(seconds=REQUEST_TIMEOUT * 4)
_RETRYABLE = {408, 425, 429}


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
        transaction.on_commit(lambda: dispatch(outbound_deliver_task, delivery.pk))
    return delivery


# ---------------------------------------------------------------- delivering


def outbound_deliver(*, delivery_id: int) -> DeliveryResult:
    """One attempt at one delivery, if it is due. The caller schedules ``retry_in`` (the sweeper also will)."""
    with log_scope(delivery_id=delivery_id):
        result = _deliver(delivery_id)
        OUTBOUND_DELIVERIES.labels(result.status).inc()
        logger.info("outbound delivery %s: %s", delivery_id, result.status)
    return result


def _deliver(delivery_id: int) -> DeliveryResult:
    delivery = _delivery_claim(delivery_id)
    if delivery is None:
        return DeliveryResult("skipped")
    started = time.monotonic()
    try:
        request = HELPDESKS[delivery.integration.kind].reply_request(delivery)
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
        return _delivery_settle(
            delivery, ok=True, remote_id=HELPDESKS[delivery.integration.kind].reply_remote_id(response)
        )
    retryable = response.status_code in _RETRYABLE or response.status_code >= 500
    return _delivery_settle(
        delivery,
        ok=False,
        retryable=retryable,
        error=f"HTTP {response.status_code}: {response.text[:500]}",
        retry_after=_retry_after(response),
    )


def _delivery_claim(delivery_id: int) -> OutboundDelivery | None:
    """Sent, dead, not due yet, or in flight in another worker: None. The hold outlasts the request timeout, so
    if this worker dies mid-request the sweeper picks the delivery up again."""
    return OutboundDelivery.claim(
        delivery_id,
        max_attempts=max_attempts(),
        hold=_IN_FLIGHT,
        due_only=True,
        related=("integration", "message__ticket", "message__customer"),
    )


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
    delay = delivery.fail(
        error,
        permanent=not retryable,
        max_attempts=max_attempts(),
        base=retry_base_seconds(),
        retry_after=retry_after,
    )
    if delay is None:
        logger.warning("outbound delivery %s is dead: %s", delivery.pk, error)
        return DeliveryResult(OutboundDelivery.Status.DEAD)
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
    return OutboundDelivery.due(limit=limit)


def outbound_delivery_replay(*, delivery: OutboundDelivery) -> None:
    """Staff replay from the admin: try again from the first attempt's budget."""
    with transaction.atomic():
        delivery.replay(status=OutboundDelivery.Status.PENDING)
        transaction.on_commit(lambda: dispatch(outbound_deliver_task, delivery.pk))
