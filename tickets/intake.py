"""Webhook intake and processing: store the raw event at once, normalise it in a worker, never lose one.

The database is the record of truth. Intake commits the raw event before answering 202; the Celery task that
normalises it is only a nudge. If the broker is down, or a worker dies mid-task, the event stays ``received``
(or ``failed``) with a ``next_attempt_at``, and the periodic sweeper dispatches it again. Processing holds
the event's row lock for its whole transaction and re-checks the status inside it, so a second delivery of
the task finds the work done: processed exactly once in effect.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from telemetry.logs import log_bind, log_scope
from telemetry.metrics import WEBHOOK_EVENTS, WEBHOOK_LAG
from tickets.helpdesks import MessageData, NormalisedEvent, PayloadError, body_hash, envelope_read, event_parse
from tickets.models import Customer, Integration, Organization, Ticket, TicketMessage, WebhookEvent
from tickets.services import TicketChanges, customer_resolve, message_ingest, ticket_upsert
from tickets.tasks import webhook_event_queue

logger = logging.getLogger(__name__)

OPEN_STATUSES = WebhookEvent.OPEN_STATUSES
# Credentials an admin may have configured on the helpdesk side: never kept in the event log.
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-webhook-token", "x-api-key"})


def max_attempts() -> int:
    return int(getattr(settings, "SUPPORTMEM_WEBHOOK_MAX_ATTEMPTS", 5))


def stuck_after() -> timedelta:
    """How long an event may sit unprocessed before the sweeper dispatches it (again)."""
    return timedelta(seconds=int(getattr(settings, "SUPPORTMEM_WEBHOOK_STUCK_SECONDS", 60)))


@dataclass(frozen=True)
class IntakeResult:
    event: WebhookEvent
    created: bool


def _storable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name not in _SECRET_HEADERS}


def _dispatch_after_commit(event_id: int) -> None:
    if settings.SUPPORTMEM_LOCAL_WORKER:
        return  # `serve`'s local worker (no broker) finds new events itself: the request does no processing
    transaction.on_commit(lambda: webhook_event_queue(event_id))


def webhook_intake(
    *, integration: Integration, headers: Mapping[str, str], raw_body: bytes, payload: Any
) -> IntakeResult:
    """Store one verified delivery. A repeat (same delivery key) changes nothing and says so."""
    envelope = envelope_read(kind=integration.kind, headers=headers, payload=payload, raw_body=raw_body)
    key = envelope.delivery_key if len(envelope.delivery_key) <= 255 else body_hash(envelope.delivery_key.encode())
    now = timezone.now()
    status = WebhookEvent.Status.RECEIVED if envelope.handled else WebhookEvent.Status.IGNORED
    event = WebhookEvent(
        integration=integration,
        organization_id=integration.organization_id,
        delivery_key=key,
        event_type=envelope.event_type[:128],
        headers=_storable_headers(headers),
        raw_body=raw_body.decode("utf-8"),
        status=status,
        next_attempt_at=now + stuck_after() if envelope.handled else None,
        processed_at=None if envelope.handled else now,
    )
    if not event.insert_unless_known():  # a repeat, or a concurrent delivery of the same event stored first
        return IntakeResult(WebhookEvent.objects.get(integration=integration, delivery_key=key), False)
    # Bound before the commit that queues processing, so the queued task (and what it starts) carries it.
    log_bind(organization=integration.organization_id, event_id=event.pk)
    if envelope.handled:
        _dispatch_after_commit(event.pk)
    WEBHOOK_EVENTS.labels(integration.kind, status).inc()
    logger.info("webhook event %s stored (%s, %s)", event.pk, integration.kind, status)
    return IntakeResult(event, True)


# ---------------------------------------------------------------- processing


def webhook_event_process(*, event_id: int) -> str:
    """Normalise one stored event into customer, ticket and messages. Returns the event's status after."""
    with log_scope(event_id=event_id):
        status = _event_process(event_id)
    return status


def _event_process(event_id: int) -> str:
    if not _event_claim(event_id):
        return "skipped"
    try:
        with transaction.atomic():
            event = (
                WebhookEvent.objects.select_for_update(of=("self",))
                .select_related("integration__organization")
                .get(pk=event_id)
            )
            if event.status not in OPEN_STATUSES:
                return event.status  # a concurrent run finished it while we waited for the lock
            return _event_apply(event)
    except PayloadError as exc:
        return _event_fail(event_id, f"payload error: {exc}", permanent=True)
    except Exception as exc:
        logger.exception("webhook event %s failed", event_id)
        return _event_fail(event_id, f"{type(exc).__name__}: {exc}", permanent=False)


def _event_claim(event_id: int) -> bool:
    """Count the attempt in its own committed transaction, so a worker killed mid-task still used one up."""
    return WebhookEvent.claim(event_id, max_attempts=max_attempts(), hold=stuck_after()) is not None


def _event_apply(event: WebhookEvent) -> str:
    kind = event.integration.kind
    payload = json.loads(event.raw_body)
    envelope = envelope_read(kind=kind, headers=event.headers, payload=payload, raw_body=event.raw_body.encode())
    if not envelope.handled:
        return _event_finish(event, WebhookEvent.Status.IGNORED)
    normalised = event_parse(kind=kind, event_type=event.event_type, headers=event.headers, payload=payload)
    organization = event.integration.organization
    log_bind(organization=organization.pk)
    if normalised.customer is None:
        # The event names only the ticket (an assignment change, say): it must be one we know.
        known = Ticket.objects.select_related("customer").filter(
            integration=event.integration, external_id=normalised.ticket_external_id[:255]
        )
        found = known.first()
        if found is None:
            raise PayloadError("the event names no requester and its ticket is not known yet")
        customer = found.customer
    else:
        customer = customer_resolve(
            organization=organization,
            source=kind,
            external_id=normalised.customer.external_id[:255],
            name=normalised.customer.name[:200],
            email=normalised.customer.email[:254],
            email_verified=event.integration.verifies_emails,
        )
    log_bind(customer=customer.pk)
    ticket = ticket_upsert(
        organization=organization,
        customer=customer,
        integration_id=event.integration_id,
        external_id=normalised.ticket_external_id[:255],
        changes=_ticket_changes(normalised),
        source_updated_at=normalised.updated_at,
        created_at=normalised.created_at,
    )
    _messages_ingest(ticket=ticket, messages=normalised.messages)
    return _event_finish(event, WebhookEvent.Status.PROCESSED, customer=ticket.customer, ticket=ticket)


def _ticket_changes(normalised: NormalisedEvent) -> TicketChanges:
    return TicketChanges(
        subject=normalised.subject[:500] if normalised.subject else None,
        status=normalised.status,
        priority=normalised.priority,
        channel=normalised.channel,
        tags=[tag[:100] for tag in normalised.tags if tag] if normalised.tags is not None else None,
    )


def _messages_ingest(*, ticket: Ticket, messages: list[MessageData]) -> None:
    """Messages join the ticket's customer's recall memory (idempotent on their external ids).

    Only the newest customer message of an event may start the agent: an event that also carries the
    conversation's earlier messages (which we may have missed) must not start one run per message.
    """
    customer_positions = [i for i, message in enumerate(messages) if message.author_role == "customer"]
    newest_customer = customer_positions[-1] if customer_positions else -1
    for position, message in enumerate(messages):
        stored, created = message_ingest(
            customer=ticket.customer,
            ticket=ticket,
            body=message.body,
            author_role=message.author_role,
            author_name=message.author_name[:200],
            is_public=message.is_public,
            external_id=message.external_id[:255],
            created_at=message.created_at,
            trigger_agent=position == newest_customer,
        )
        metadata = {"attachments": message.attachments, "links": message.links}
        metadata = {key: value for key, value in metadata.items() if value}
        if not created and message.replaces and stored.body != message.body:
            # The vendor re-sent an edited text under the same id (Freshdesk's description): ours follows.
            TicketMessage.objects.filter(pk=stored.pk).update(body=message.body, metadata=metadata)
        elif created and metadata:
            TicketMessage.objects.filter(pk=stored.pk).update(metadata=metadata)


def _event_finish(
    event: WebhookEvent, status: str, *, customer: Customer | None = None, ticket: Ticket | None = None
) -> str:
    event.status = status
    event.customer = customer
    event.ticket = ticket
    event.processed_at = timezone.now()
    event.next_attempt_at = None
    event.last_error = ""
    event.save(update_fields=["status", "customer", "ticket", "processed_at", "next_attempt_at", "last_error"])
    kind = event.integration.kind
    WEBHOOK_EVENTS.labels(kind, status).inc()
    WEBHOOK_LAG.labels(kind).observe((event.processed_at - event.received_at).total_seconds())
    logger.info("webhook event %s %s", event.pk, status)
    return status


def _event_fail(event_id: int, error: str, *, permanent: bool) -> str:
    event = WebhookEvent(pk=event_id)
    event.fail(error, permanent=permanent, max_attempts=max_attempts())
    status, kind = WebhookEvent.objects.values_list("status", "integration__kind").get(pk=event_id)
    WEBHOOK_EVENTS.labels(kind, status).inc()
    logger.warning("webhook event %s %s: %s", event_id, status, error[:200])
    return status


# ---------------------------------------------------------------- sweeper and replay


def webhook_events_due(*, limit: int = 500) -> list[int]:
    """Events whose time has come (stuck after intake, or a failure's backoff elapsed), pushed back by the
    stuck period so the next sweep does not dispatch them again while they wait in the queue."""
    return WebhookEvent.due(limit=limit, push=stuck_after())


def webhook_events_new(*, limit: int = 100) -> list[int]:
    """Events stored and never attempted (new, or replayed by staff), oldest first: the local worker's queue."""
    rows = WebhookEvent.objects.filter(status=WebhookEvent.Status.RECEIVED, attempts=0).order_by("pk")
    return list(rows.values_list("pk", flat=True)[:limit])


def webhook_event_replay(*, event: WebhookEvent) -> None:
    """Staff replay (from the admin): process the stored event again from scratch. Idempotent in effect."""
    with transaction.atomic():
        event.replay(status=WebhookEvent.Status.RECEIVED, delay=stuck_after(), processed_at=None)
        _dispatch_after_commit(event.pk)


# Integrations the webhook path found, per process: (kind, token) -> (expires at, integration). A change saved
# in this process empties it at once (the receivers below); other processes see it within
# INTEGRATION_CACHE_SECONDS, so a deactivated or re-keyed integration stops accepting within that time.
INTEGRATION_CACHE_SECONDS = 5.0
_INTEGRATIONS: dict[tuple[str, str], tuple[float, Integration]] = {}


def integration_for_webhook(*, kind: str, token: str) -> Integration | None:
    """The active integration a webhook URL belongs to; None for any unknown, inactive or mismatched URL.

    Found integrations are kept briefly (a delivery then costs no look-up); misses are not, so random
    tokens cannot fill the memory and a new integration answers at once."""
    now = time.monotonic()
    cached = _INTEGRATIONS.get((kind, token))
    if cached is not None and cached[0] > now:
        return cached[1]
    integration = (
        Integration.objects.select_related("organization")
        .filter(webhook_token=token, kind=kind, is_active=True)
        .first()
    )
    if integration is None:
        _INTEGRATIONS.pop((kind, token), None)
        return None
    if len(_INTEGRATIONS) > 10_000:
        _INTEGRATIONS.clear()
    _INTEGRATIONS[(kind, token)] = (now + INTEGRATION_CACHE_SECONDS, integration)
    return integration


@receiver([post_save, post_delete], sender=Integration, dispatch_uid="tickets.integrations_forget")
@receiver([post_save, post_delete], sender=Organization, dispatch_uid="tickets.integrations_forget_org")
def integrations_forget(**kwargs: Any) -> None:
    """A saved or deleted integration (or organisation): this process's next delivery looks it up again."""
    _INTEGRATIONS.clear()
