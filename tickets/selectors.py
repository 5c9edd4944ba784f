"""Reads shared by views, tools and the admin. Every secured object is fetched through one of these."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from tickets.models import Customer, Organization, Ticket, TicketMessage


def customer_get(*, organization: Organization, customer_id: int | str) -> Customer:
    """The organisation's customer with that id, or 404 (another organisation's id included)."""
    try:
        return Customer.objects.get(organization=organization, pk=int(customer_id))
    except (Customer.DoesNotExist, ValueError, TypeError):
        raise Http404("No such customer") from None


def customer_by_external_id(*, organization: Organization, external_id: str) -> Customer:
    """Find a customer by any of their identities' external ids, or by email. 404 when none."""
    customer = (
        Customer.objects.filter(organization=organization, identities__external_id=external_id).first()
        or Customer.objects.filter(organization=organization, email__iexact=external_id).first()
    )
    if customer is None and external_id.isdigit():
        customer = Customer.objects.filter(organization=organization, pk=int(external_id)).first()
    if customer is None:
        raise Http404("No such customer")
    return customer


def ticket_get(*, customer: Customer, ticket_id: int | str) -> Ticket:
    """One of this customer's tickets, or 404."""
    try:
        return Ticket.objects.get(customer=customer, pk=int(ticket_id))
    except (Ticket.DoesNotExist, ValueError, TypeError):
        raise Http404("No such ticket") from None


def ticket_list(*, customer: Customer, status: str | None = None) -> QuerySet[Ticket]:
    tickets = Ticket.objects.filter(customer=customer)
    if status:
        tickets = tickets.filter(status=status)
    return tickets.order_by("-updated_at")


def message_list(*, customer: Customer, include_internal: bool = True) -> QuerySet[TicketMessage]:
    """A customer's messages, oldest first. ``include_internal=False`` is what the customer may read: no
    internal notes (``is_public=False``), the view of every run whose reply reaches the customer."""
    messages = TicketMessage.objects.filter(customer=customer)
    if not include_internal:
        messages = messages.filter(is_public=True)
    return messages.order_by("created_at", "id")


def ticket_messages(*, ticket: Ticket, include_internal: bool) -> QuerySet[TicketMessage]:
    """One ticket's messages, oldest first; internal notes only when ``include_internal``."""
    messages = TicketMessage.objects.filter(ticket=ticket)
    if not include_internal:
        messages = messages.filter(is_public=True)
    return messages.order_by("created_at", "id")


def customer_list(*, organization: Organization) -> QuerySet[Customer]:
    """Every customer of the organisation (the API's list endpoint filters this further)."""
    return Customer.objects.filter(organization=organization).order_by("id")
