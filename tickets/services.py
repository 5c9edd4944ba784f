"""Writes for customers, tickets and messages: the one ingestion path every channel goes through."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from tickets.models import Customer, CustomerIdentity, Organization, Ticket, TicketMessage
from tickets.signals import message_ingested, ticket_solved

# Statuses in the order a ticket normally moves through them; used to keep
# out-of-order helpdesk events from reopening a ticket with stale data.
_TERMINAL = {Ticket.Status.SOLVED, Ticket.Status.CLOSED}


def organization_create(*, name: str, slug: str, **settings_fields: object) -> Organization:
    return Organization.objects.create(name=name, slug=slug, **settings_fields)


def customer_resolve(
    *,
    organization: Organization,
    source: str,
    external_id: str,
    name: str = "",
    email: str = "",
    email_verified: bool = False,
) -> Customer:
    """The customer behind an external identity, created (with that identity) on first sight.

    A new identity is attached to an existing customer by email only when ``email_verified``: the caller
    vouches that the sender proved they own the address (an integration marked ``verifies_emails``).
    Anyone can type someone else's email into a web form, an Intercom lead or a portal; matching on it
    would hand that person the victim's history. Unverified, the identity becomes its own customer (with
    the email kept as contact data) and staff merge customers explicitly.
    """
    identity = (
        CustomerIdentity.objects.select_related("customer")
        .filter(organization=organization, source=source, external_id=external_id)
        .first()
    )
    if identity is not None:
        customer = identity.customer
        _fill_blank_contact(customer, name=name, email=email)
        return customer
    try:
        with transaction.atomic():
            matched = (
                Customer.objects.filter(organization=organization, email__iexact=email).order_by("pk").first()
                if email and email_verified
                else None
            )
            customer = matched or Customer.objects.create(organization=organization, name=name, email=email)
            CustomerIdentity.objects.create(
                organization=organization, customer=customer, source=source, external_id=external_id
            )
    except IntegrityError:
        # A concurrent delivery created the identity first: use theirs.
        return (
            CustomerIdentity.objects.select_related("customer")
            .get(organization=organization, source=source, external_id=external_id)
            .customer
        )
    _fill_blank_contact(customer, name=name, email=email)
    return customer


def _fill_blank_contact(customer: Customer, *, name: str, email: str) -> None:
    changed = []
    if name and not customer.name:
        customer.name = name
        changed.append("name")
    if email and not customer.email:
        customer.email = email
        changed.append("email")
    if changed:
        customer.save(update_fields=[*changed, "updated_at"])


@dataclass(frozen=True)
class TicketChanges:
    subject: str | None = None
    status: str | None = None
    priority: str | None = None
    channel: str | None = None
    tags: list[str] | None = None


def ticket_upsert(
    *,
    organization: Organization,
    customer: Customer,
    integration_id: int | None,
    external_id: str,
    changes: TicketChanges,
    source_updated_at: datetime | None = None,
    created_at: datetime | None = None,
    announce: bool = True,
) -> Ticket:
    """Create or update a ticket by its external id, ignoring changes older than the last applied.

    ``announce=False`` (history import) does not send ``ticket_solved``: the import consolidates its solved
    tickets itself, per customer, oldest first.
    """
    now = timezone.now()
    with transaction.atomic():
        ticket, created = Ticket.objects.select_for_update().get_or_create(
            integration_id=integration_id,
            external_id=external_id,
            organization=organization,
            defaults={
                "customer": customer,
                "created_at": created_at or source_updated_at or now,
                "updated_at": source_updated_at or now,
            },
        )
        stale = (
            not created
            and source_updated_at is not None
            and ticket.source_updated_at is not None
            and source_updated_at < ticket.source_updated_at
        )
        if stale:
            return ticket
        was_solved = ticket.status in _TERMINAL
        for field in ("subject", "status", "priority", "channel", "tags"):
            value = getattr(changes, field)
            if value is not None:
                setattr(ticket, field, value)
        if source_updated_at is not None:
            ticket.source_updated_at = source_updated_at
        ticket.updated_at = source_updated_at or now
        if ticket.status in _TERMINAL and not was_solved:
            ticket.solved_at = source_updated_at or now
            if announce:
                transaction.on_commit(lambda: ticket_solved.send(sender=Ticket, ticket_id=ticket.pk))
        ticket.save()
    return ticket


def message_ingest(
    *,
    customer: Customer,
    body: str,
    author_role: str,
    ticket: Ticket | None = None,
    author_name: str = "",
    is_public: bool = True,
    external_id: str = "",
    channel: str = "",
    created_at: datetime | None = None,
    announce: bool = True,
    trigger_agent: bool = True,
) -> tuple[TicketMessage, bool]:
    """Store one message in recall memory. Idempotent on (ticket, external_id).

    Returns the message and whether it was new. New messages are announced after
    commit (``message_ingested``) so that memory can embed them and, for a customer
    message with ``trigger_agent``, the agent can answer. Callers that run the agent
    themselves (the widget, agent_chat) pass ``trigger_agent=False``; ``announce=False``
    stays silent altogether (bulk loads, which then embed in batches).
    """
    if external_id and ticket is not None:
        existing = TicketMessage.objects.filter(ticket=ticket, external_id=external_id).first()
        if existing is not None:
            return existing, False
    try:
        with transaction.atomic():
            message = TicketMessage.objects.create(
                organization_id=customer.organization_id,
                customer=customer,
                ticket=ticket,
                author_role=author_role,
                author_name=author_name,
                body=body,
                is_public=is_public,
                external_id=external_id,
                channel=channel,
                created_at=created_at or timezone.now(),
            )
    except IntegrityError:
        if not external_id or ticket is None:
            raise
        return TicketMessage.objects.get(ticket=ticket, external_id=external_id), False
    if ticket is not None and (created_at or message.created_at) > ticket.updated_at:
        Ticket.objects.filter(pk=ticket.pk).update(updated_at=message.created_at)
    if announce and author_role == TicketMessage.Role.AGENT and ticket is not None:
        # An agent reply on a helpdesk ticket goes back to that helpdesk (the delivery row makes it once only).
        transaction.on_commit(lambda: _reply_send(message.pk))
    if announce:
        transaction.on_commit(
            lambda: message_ingested.send(
                sender=TicketMessage, message_id=message.pk, author_role=author_role, trigger_agent=trigger_agent
            )
        )
    return message, True


def _reply_send(message_id: int) -> None:
    from tickets.outbound import outbound_delivery_create  # outbound imports intake, which imports this module

    message = TicketMessage.objects.select_related("ticket__integration", "customer").filter(pk=message_id).first()
    if message is not None:
        outbound_delivery_create(message=message)


def messages_ingest_bulk(*, ticket: Ticket, messages: list[TicketMessage]) -> list[int]:
    """Store many messages of one ticket without announcing them (history import); returns the new rows' ids.

    The same idempotency as ``message_ingest``: a message whose (ticket, external_id) is stored already is
    skipped. The fast path is one query for the known ids and one multi-row insert; if a concurrent writer (a
    webhook for the same ticket) inserted one of them in between, the insert is rolled back to its savepoint and
    the messages go through ``message_ingest`` one by one, which settles each on the unique constraint.
    """
    wanted = [message for message in messages if message.external_id]
    known = set(
        TicketMessage.objects.filter(ticket=ticket, external_id__in=[m.external_id for m in wanted]).values_list(
            "external_id", flat=True
        )
    )
    fresh: list[TicketMessage] = []
    seen: set[str] = set()
    for message in messages:
        if message.external_id and (message.external_id in known or message.external_id in seen):
            continue
        seen.add(message.external_id)
        message.ticket = ticket
        message.customer_id = ticket.customer_id
        message.organization_id = ticket.organization_id
        fresh.append(message)
    if not fresh:
        return []
    try:
        with transaction.atomic():
            created = TicketMessage.objects.bulk_create(fresh)
    except IntegrityError:
        created = []
        for message in fresh:
            stored, new = message_ingest(
                customer=ticket.customer,
                ticket=ticket,
                body=message.body,
                author_role=message.author_role,
                author_name=message.author_name,
                is_public=message.is_public,
                external_id=message.external_id,
                created_at=message.created_at,
                announce=False,
            )
            if new:
                created.append(stored)
    newest = max(message.created_at for message in created) if created else None
    if newest is not None and newest > ticket.updated_at:
        Ticket.objects.filter(pk=ticket.pk, updated_at__lt=newest).update(updated_at=newest)
    return [message.pk for message in created]
