"""Staff and API clients create and delete core memory blocks; organisation templates give every customer a block."""

from __future__ import annotations

import pytest
from django.test import Client

from memory.models import BlockTemplate, MemoryBlock
from memory.services import blocks_ensure
from tests.api.helpers import assert_error
from tickets.services import customer_resolve


@pytest.fixture
def staff_client(actors) -> Client:
    client = Client()
    client.force_login(actors.staff)
    return client


def test_api_creates_a_customer_block_once_and_deletes_it_with_a_reason(actors, api):
    url = f"/api/customers/{actors.customer.pk}/memory/"
    body = {"label": "billing", "description": "Invoices and refunds", "value": "Pays by SEPA.", "char_limit": 800}
    created = api.post(url, body, format="json")
    assert created.status_code == 201, created.content
    assert created["ETag"] == '"1"' and created.json()["scope"] == "customer"
    assert_error(api.post(url, body, format="json"), 409)
    assert_error(api.post(url, {**body, "label": "not a slug!"}, format="json"), 400)
    assert_error(api.post(url, {**body, "label": "long", "value": "x" * 900}, format="json"), 400)

    block = MemoryBlock.objects.get(customer=actors.customer, label="billing")
    assert api.delete(f"{url}billing/?reason=duplicate of customer").status_code == 204
    assert not MemoryBlock.objects.filter(pk=block.pk).exists()
    deleted = MemoryBlock.history.filter(id=block.pk).order_by("-history_id").first()
    assert deleted.history_type == "-" and deleted.change_source == "api"
    assert deleted.history_change_reason.startswith("duplicate of customer (API key")
    assert_error(api.delete(f"{url}billing/"), 404)


def test_api_blocks_of_another_organisation_are_404(actors, api, other_api):
    blocks_ensure(customer=actors.customer)
    assert_error(other_api.post(f"/api/customers/{actors.customer.pk}/memory/", {"label": "x"}, format="json"), 404)
    assert_error(other_api.delete(f"/api/customers/{actors.customer.pk}/memory/customer/"), 404)
    assert MemoryBlock.objects.filter(customer=actors.customer, label="customer").exists()


def test_api_organisation_blocks(actors, api):
    created = api.post("/api/memory/", {"label": "shipping_policy", "value": "Ships in 2 days."}, format="json")
    assert created.status_code == 201 and created.json()["scope"] == "organization"
    assert api.delete("/api/memory/shipping_policy/").status_code == 204
    assert not MemoryBlock.objects.filter(organization=actors.org, label="shipping_policy").exists()


def test_staff_add_and_delete_a_block_in_the_console(staff_client, actors):
    add = f"/admin/memory/memoryblock/add/?customer={actors.customer.pk}"
    form = {"label": "devices", "description": "Hardware they own", "value": "Reader R2", "char_limit": 500}
    response = staff_client.post(add, {**form, "reason": "she listed her devices"})
    assert response.status_code == 302
    block = MemoryBlock.objects.get(customer=actors.customer, label="devices")
    assert block.value == "Reader R2" and block.history.first().history_user_id == actors.staff.pk

    again = staff_client.post(add, {**form, "reason": "again"})
    assert again.status_code == 200 and "already exists" in again.content.decode()
    assert staff_client.post(f"/admin/memory/memoryblock/add/?customer={actors.stranger.pk}", form).status_code == 404

    page = staff_client.get(f"/admin/support_agent/customermemory/{actors.customer.pk}/change/").content.decode()
    assert f'href="/admin/memory/memoryblock/{block.pk}/delete/' in page and 'id="add-block"' in page
    deleted = staff_client.post(f"/admin/memory/memoryblock/{block.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302
    assert not MemoryBlock.objects.filter(pk=block.pk).exists()
    assert MemoryBlock.history.filter(id=block.pk, history_type="-").get().history_user_id == actors.staff.pk


def test_a_template_gives_every_new_customer_its_block(staff_client, actors):
    response = staff_client.post(
        "/admin/memory/blocktemplate/add/",
        {"label": "subscription", "description": "Plan and renewal", "value": "Plan: unknown", "char_limit": 600},
    )
    assert response.status_code == 302, response.content
    template = BlockTemplate.objects.get(label="subscription")
    assert template.organization == actors.org
    duplicate = staff_client.post("/admin/memory/blocktemplate/add/", {"label": "subscription", "char_limit": 600})
    assert duplicate.status_code == 200 and "already has a template" in duplicate.content.decode()

    newcomer = customer_resolve(organization=actors.org, source="api", external_id="new-1", name="Kofi Mensah")
    blocks = {block.label: block for block in blocks_ensure(customer=newcomer)}
    assert blocks["subscription"].value == "Plan: unknown" and blocks["subscription"].char_limit == 600
    stranger_labels = {block.label for block in blocks_ensure(customer=actors.stranger)}
    assert "subscription" not in stranger_labels  # another organisation's customers do not get it
