"""Load the demo organisation: a staff login, customers with months of ticket history and their starting
memory. Idempotent. It lives in the top layer because it fills every layer below (tickets, then memory)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from memory.models import MemoryBlock
from memory.services import Provenance, block_set_value, blocks_ensure
from memory.tasks import dispatch, embed_pending_task
from support_agent.demo_data import (
    DEMO_CUSTOMERS,
    DEMO_ORGANIZATION,
    DEMO_PERSONA,
    DEMO_POLICIES,
    DEMO_STAFF,
    DemoTicket,
)
from tickets.models import Customer, Organization, StaffMembership, Ticket
from tickets.services import TicketChanges, customer_resolve, message_ingest, ticket_upsert
from tickets.staff import grant_staff_permissions


class Command(BaseCommand):
    help = "Create (or refresh) the demo organisation, its staff login and its customers' history."

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            organization, _ = Organization.objects.get_or_create(
                slug=DEMO_ORGANIZATION["slug"], defaults={"name": DEMO_ORGANIZATION["name"]}
            )
            if not organization.widget_allowed_origins:
                organization.widget_allowed_origins = ["http://127.0.0.1:8000", "http://localhost:8000"]
                organization.save(update_fields=["widget_allowed_origins"])
            self._staff(organization)
            customer_ids = [self._customer(organization, data) for data in DEMO_CUSTOMERS]
            blocks = {cid: data.get("blocks", {}) for cid, data in zip(customer_ids, DEMO_CUSTOMERS, strict=True)}
            _memory(organization, customer_ids, cast(dict[int, dict[str, str]], blocks))
        # The history was bulk-loaded without announcements: embed all of it in batches.
        dispatch(embed_pending_task, organization.pk)
        self.stdout.write(self.style.SUCCESS(f"Demo organisation '{organization.slug}' ready."))
        self.stdout.write(f"Staff login: {DEMO_STAFF['username']} / {DEMO_STAFF['password']}")

    def _staff(self, organization: Organization) -> None:
        User = get_user_model()
        user, created = User.objects.get_or_create(
            username=DEMO_STAFF["username"], defaults={"email": DEMO_STAFF["email"], "is_staff": True}
        )
        if created:
            user.set_password(DEMO_STAFF["password"])
            user.save()
        StaffMembership.objects.get_or_create(user=user, defaults={"organization": organization})
        grant_staff_permissions(user, reviewer=True, org_admin=True)

    def _customer(self, organization: Organization, data: dict[str, object]) -> int:
        identities = cast(list[tuple[str, str]], data["identities"])
        source, external_id = identities[0]
        customer = customer_resolve(
            organization=organization,
            source=source,
            external_id=external_id,
            name=str(data["name"]),
            email=str(data["email"]),
        )
        for other_source, other_id in identities[1:]:
            customer.identities.get_or_create(organization=organization, source=other_source, external_id=other_id)
        if not customer.metadata:
            customer.metadata = cast(dict[str, Any], data["metadata"])
            customer.save(update_fields=["metadata"])
        now = timezone.now()
        for number, ticket_data in enumerate(cast(list[DemoTicket], data["tickets"]), start=1):
            days_ago, subject, status, priority, channel, tags, messages = ticket_data
            opened = now - timedelta(days=days_ago)
            last = opened + timedelta(hours=messages[-1][0])
            ticket = ticket_upsert(
                organization=organization,
                customer=customer,
                integration_id=None,
                external_id=f"demo-{customer.pk}-{number}",
                changes=TicketChanges(subject=subject, status=status, priority=priority, channel=channel, tags=tags),
                created_at=opened,
                source_updated_at=last,
            )
            for index, (hours, role, body) in enumerate(messages, start=1):
                message_ingest(
                    customer=customer,
                    ticket=ticket,
                    body=body,
                    author_role=role,
                    author_name=customer.name if role == "customer" else "Northwind support",
                    external_id=f"demo-{number}-{index}",
                    created_at=opened + timedelta(hours=hours),
                    announce=False,
                )
        Ticket.objects.filter(customer=customer, status__in=["solved", "closed"], solved_at__isnull=True).update(
            solved_at=now
        )
        return customer.pk


def _memory(organization: Organization, customer_ids: list[int], blocks: dict[int, dict[str, str]]) -> None:
    """Default blocks and starting facts for the demo customers, persona and policies (blank blocks only)."""
    seed = Provenance(reason="demo data")
    for customer in Customer.objects.filter(organization=organization, pk__in=customer_ids):
        blocks_ensure(customer=customer)
        for label, value in blocks.get(customer.pk, {}).items():
            block = MemoryBlock.objects.get(organization=organization, customer=customer, label=label)
            if not block.value:
                block_set_value(block=block, value=value, provenance=seed)
    for label, value in (("persona", DEMO_PERSONA), ("policies", DEMO_POLICIES)):
        block = MemoryBlock.objects.get(organization=organization, customer__isnull=True, label=label)
        if not block.value:
            block_set_value(block=block, value=value, provenance=seed)
