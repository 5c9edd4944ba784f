"""The demo loader is idempotent and gives staff a working login."""

from __future__ import annotations

from django.core.management import call_command

from memory.models import MemoryBlock
from tickets.models import Customer, Organization, TicketMessage


def test_seed_demo_twice_changes_nothing(db):
    call_command("seed_demo")
    counts = (Customer.objects.count(), TicketMessage.objects.count(), MemoryBlock.objects.count())
    call_command("seed_demo")
    assert (Customer.objects.count(), TicketMessage.objects.count(), MemoryBlock.objects.count()) == counts
    assert counts[0] >= 4 and counts[1] >= 25
    demo = Organization.objects.get(slug="demo")
    dana = Customer.objects.get(organization=demo, email="dana.whitfield@example.com")
    assert dana.identities.count() == 2
    assert "Whitfield Bakery" in MemoryBlock.objects.get(customer=dana, label="customer").value


def test_demo_staff_can_log_in(db, client):
    call_command("seed_demo")
    response = client.post("/admin/login/?next=/admin/", {"username": "demo", "password": "supportmem-demo"})
    assert response.status_code == 302
    assert client.get("/admin/tickets/customer/").status_code == 200
