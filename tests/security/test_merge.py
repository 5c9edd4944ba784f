"""Merging customers: the remedy when one person arrives as two (an email no longer joins them by itself).

Staff merge in the admin or through the API; everything of the merged-away customer moves, core memory is
combined per label within limits, the merge is recorded, and an undo puts it back.
"""

from __future__ import annotations

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from rest_framework.test import APIClient

from memory.models import ArchivalPassage, MemoryBlock, PendingMemoryEdit
from memory.services import Provenance, block_set_value, blocks_ensure, passage_insert
from support_agent.models import AgentRun, CustomerMerge
from tickets.auth import api_key_create
from tickets.models import Customer, CustomerIdentity, Ticket, TicketMessage
from tickets.services import TicketChanges, customer_resolve, message_ingest, ticket_upsert


def _api(organization) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(organization=organization, name='t')[1]}")
    return client


def _block(customer: Customer, label: str) -> MemoryBlock:
    return MemoryBlock.objects.get(customer=customer, label=label)


@pytest.fixture
def twin(actors) -> Customer:
    """Dana again, as an Intercom lead with her email: a separate customer since emails are not trusted."""
    twin = customer_resolve(organization=actors.org, source="intercom", external_id="lead-1", email="dana@example.com")
    ticket = ticket_upsert(
        organization=actors.org,
        customer=twin,
        integration_id=None,
        external_id="ic-t1",
        changes=TicketChanges(subject="Receipt printer jam", status="open"),
    )
    message_ingest(
        customer=twin, ticket=ticket, body="My receipt printer jams.", author_role="customer", announce=False
    )
    blocks_ensure(customer=actors.customer)
    blocks_ensure(customer=twin)
    block_set_value(
        block=_block(actors.customer, "customer"), value="Name: Dana\nUses Verifone P400", provenance=Provenance()
    )
    block_set_value(
        block=_block(twin, "customer"), value="Uses Verifone P400\nWorks at Lumen Cafe", provenance=Provenance()
    )
    preferences = _block(actors.customer, "preferences")
    preferences.char_limit = 40
    preferences.save()
    block_set_value(block=preferences, value="Prefers email", provenance=Provenance())
    block_set_value(
        block=_block(twin, "preferences"),
        value="Prefers mornings\nNever call on Fridays, the shop is busy",
        provenance=Provenance(),
    )
    for text in ("Order A-1001 shipped.", "Reader firmware 4.2.3 fixed the sync."):
        passage_insert(organization=actors.org, customer=twin, text=text, provenance=Provenance())
    passage_insert(
        organization=actors.org,
        customer=actors.customer,
        text="Reader firmware 4.2.3 fixed the sync.",
        provenance=Provenance(),
    )
    PendingMemoryEdit.objects.create(
        organization=actors.org,
        customer=twin,
        block=_block(twin, "customer"),
        operation="append",
        new_content="Owns two readers",
        base_version=1,
    )
    AgentRun.objects.create(organization=actors.org, customer=twin, trigger="message", status="completed")
    LogEntry.objects.log_action(
        user_id=actors.staff.pk,
        content_type_id=ContentType.objects.get_for_model(Customer).pk,
        object_id=str(twin.pk),
        object_repr="dana@example.com",
        action_flag=CHANGE,
    )
    return twin


def test_api_merge_moves_everything_combines_memory_and_undo_restores(actors, twin):
    api = _api(actors.org)
    dana_before = {label: _block(actors.customer, label).value for label in ("customer", "preferences")}

    response = api.post(f"/api/customers/{twin.pk}/merge/", {"into": actors.customer.pk}, format="json")

    assert response.status_code == 201, response.content
    merge = CustomerMerge.objects.get(pk=response.json()["id"])
    assert (merge.into_id, merge.source_customer_id, merge.via) == (actors.customer.pk, twin.pk, "api")
    assert not Customer.objects.filter(pk=twin.pk).exists()
    assert api.get(f"/api/customers/{twin.pk}/").status_code == 404
    assert set(actors.customer.identities.values_list("external_id", flat=True)) == {"zd-1", "lead-1"}
    assert Ticket.objects.get(external_id="ic-t1").customer_id == actors.customer.pk
    assert TicketMessage.objects.filter(customer=actors.customer, body="My receipt printer jams.").exists()
    assert AgentRun.objects.filter(customer=actors.customer).count() == 1
    assert LogEntry.objects.get().object_id == str(actors.customer.pk)  # found when the survivor is erased
    # Memory: lines combined without repeats; what would overflow a block became a passage; provenance recorded.
    assert _block(actors.customer, "customer").value == "Name: Dana\nUses Verifone P400\nWorks at Lumen Cafe"
    preferences = _block(actors.customer, "preferences")
    assert preferences.value == "Prefers email\nPrefers mornings" and not preferences.over_limit
    overflow = ArchivalPassage.objects.get(customer=actors.customer, tags__contains=["merged-memory"])
    assert "Never call on Fridays" in overflow.text
    assert (
        preferences.history.first().history_change_reason
        == f"customer {twin.pk} merged into customer {actors.customer.pk}"
    )
    assert MemoryBlock.objects.filter(customer_id=twin.pk).count() == 0
    assert not MemoryBlock.history.filter(customer_id=twin.pk).exists()  # history follows, for erasure
    assert PendingMemoryEdit.objects.get().block_id == _block(actors.customer, "customer").pk
    current = ArchivalPassage.objects.filter(customer=actors.customer, invalidated_at__isnull=True)
    assert sorted(current.values_list("text", flat=True)) == sorted(
        ["Order A-1001 shipped.", "Reader firmware 4.2.3 fixed the sync.", overflow.text]
    )
    assert len(merge.moved["duplicate_passage_ids"]) == 1

    undo = api.post(f"/api/customers/{actors.customer.pk}/merges/{merge.pk}/undo/")

    assert undo.status_code == 200, undo.content
    back = Customer.objects.get(pk=twin.pk)
    assert back.email == "dana@example.com"
    assert set(back.identities.values_list("external_id", flat=True)) == {"lead-1"}
    assert Ticket.objects.get(external_id="ic-t1").customer_id == twin.pk
    assert {label: _block(actors.customer, label).value for label in dana_before} == dana_before
    assert _block(back, "preferences").value == "Prefers mornings\nNever call on Fridays, the shop is busy"
    assert not ArchivalPassage.objects.filter(tags__contains=["merged-memory"]).exists()
    assert ArchivalPassage.objects.filter(customer=back, invalidated_at__isnull=True).count() == 2
    assert PendingMemoryEdit.objects.get().customer_id == twin.pk
    assert AgentRun.objects.filter(customer=back).count() == 1
    assert LogEntry.objects.get().object_id == str(twin.pk)
    assert api.post(f"/api/customers/{actors.customer.pk}/merges/{merge.pk}/undo/").status_code == 409


def test_merge_is_scoped_to_the_organisation_and_refuses_bad_input(actors, twin):
    api, other_api = _api(actors.org), _api(actors.other_org)
    assert api.post(f"/api/customers/{twin.pk}/merge/", {"into": actors.stranger.pk}, format="json").status_code == 404
    assert api.post(f"/api/customers/{actors.stranger.pk}/merge/", {"into": twin.pk}, format="json").status_code == 404
    assert (
        other_api.post(f"/api/customers/{twin.pk}/merge/", {"into": actors.customer.pk}, format="json").status_code
        == 404
    )
    assert api.post(f"/api/customers/{twin.pk}/merge/", {"into": twin.pk}, format="json").status_code == 400
    assert api.post(f"/api/customers/{twin.pk}/merge/", {"into": "x"}, format="json").status_code == 400
    assert api.post(f"/api/customers/{twin.pk}/merge/", {}, format="json").status_code == 400
    merge = api.post(f"/api/customers/{twin.pk}/merge/", {"into": actors.customer.pk}, format="json").json()
    assert other_api.post(f"/api/customers/{actors.customer.pk}/merges/{merge['id']}/undo/").status_code == 404
    assert CustomerIdentity.objects.get(external_id="lead-1").customer_id == actors.customer.pk


def test_admin_merge_screen_merges_records_the_user_and_undoes(actors, twin):
    staff, outsider = Client(), Client()
    staff.force_login(actors.staff)
    outsider.force_login(actors.other_staff)
    url = f"/admin/support_agent/customermemory/{twin.pk}/merge/"
    assert outsider.get(url).status_code == 404
    assert staff.get(url).status_code == 200
    refused = staff.post(url, {"into": actors.stranger.pk})
    assert refused.status_code == 200 and Customer.objects.filter(pk=twin.pk).exists()

    done = staff.post(url, {"into": actors.customer.pk})

    assert done.status_code == 302
    merge = CustomerMerge.objects.get()
    assert merge.merged_by == actors.staff and merge.via == "admin"
    page = staff.get(f"/admin/support_agent/customermemory/{actors.customer.pk}/merge/")
    assert f"#{twin.pk}" in page.content.decode()
    undo_url = f"/admin/support_agent/customermemory/merges/{merge.pk}/undo/"
    assert outsider.post(undo_url).status_code == 404
    assert staff.post(undo_url).status_code == 302
    merge.refresh_from_db()
    assert merge.undone_by == actors.staff and Customer.objects.filter(pk=twin.pk).exists()


def test_erasing_a_customer_whose_merge_was_undone_leaves_nothing_of_them_on_the_merge_record(actors, twin):
    """The undone merge's record belongs to the surviving customer but holds the other one's snapshot (contact
    data, core memory): erasing the restored customer must take it along."""
    from tests.security.test_erasure_canaries import _columns_holding

    api = _api(actors.org)
    merge = api.post(f"/api/customers/{twin.pk}/merge/", {"into": actors.customer.pk}, format="json").json()
    assert api.post(f"/api/customers/{actors.customer.pk}/merges/{merge['id']}/undo/").status_code == 200
    assert _columns_holding("Lumen Cafe")  # the twin's core memory, on its own block and on the merge record

    response = api.post(f"/api/customers/{twin.pk}/erase/")

    assert response.status_code == 200, response.content
    assert _columns_holding("Lumen Cafe") == []
    assert _columns_holding("Never call on Fridays") == []
    assert not CustomerMerge.objects.filter(source_customer_id=twin.pk).exists()
    assert Customer.objects.filter(pk=actors.customer.pk).exists()
