"""The customer memory page: found by name, email or external id; shows every layer; scoped to the organisation."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.admin.conftest import WRONG_FACT

CUSTOMERS = "/admin/support_agent/customermemory/"


@pytest.fixture
def staff_client(actors) -> Client:
    client = Client()
    client.force_login(actors.staff)
    return client


@pytest.mark.parametrize("query", ["dana@example.com", "Whitfield", "zd-1"])
def test_staff_find_a_customer_by_email_name_or_external_id(staff_client, actors, memory, query):
    listing = staff_client.get(CUSTOMERS, {"q": query})
    assert listing.status_code == 200
    assert b"Dana Whitfield" in listing.content
    assert b"Lee Park" not in listing.content
    assert b"Sam Stranger" not in listing.content  # zd-1 is also the stranger's id, in the other organisation


def test_the_list_flags_pending_edits(staff_client, memory):
    assert b"2 pending" in staff_client.get(CUSTOMERS).content


def test_customer_page_shows_every_layer(staff_client, actors, memory):
    page = staff_client.get(f"{CUSTOMERS}{actors.customer.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "zendesk:zd-1" in html  # identities
    assert WRONG_FACT in html  # block value
    assert f"{len(memory.customer_block.value)} / 2000 characters" in html
    assert f"/admin/support_agent/agentrun/{memory.run.pk}/change/#step-{memory.step.pk}" in html  # last changed by
    assert "2 pending" in html
    assert "Card reader not syncing" in html and "89 USD each time" in html  # tickets with messages
    assert "Reader firmware is 4.2.3 after the update." in html  # current passage
    assert "Reader firmware is 4.2.1." in html and "superseded" in html  # superseded passage, still shown
    assert f"run #{memory.run.pk}" in html
    assert "persona" in html  # organisation-wide blocks, shared


def test_passage_search_on_the_customer_page(staff_client, actors, memory):
    page = staff_client.get(f"{CUSTOMERS}{actors.customer.pk}/change/", {"q": "firmware update"})
    html = page.content.decode()
    assert "Reader firmware is 4.2.3 after the update." in html
    assert "Reader firmware is 4.2.1." not in html  # superseded passages are out of search by default


def test_staff_add_a_passage_from_the_customer_page(staff_client, actors, memory):
    response = staff_client.post(
        f"{CUSTOMERS}{actors.customer.pk}/passages/add/", {"text": "Bakery opens at 6am.", "tags": "hours, Store"}
    )
    assert response.status_code == 302
    passage = actors.customer.passages.get(text="Bakery opens at 6am.")
    assert passage.tags == ["hours", "store"]
    assert passage.change_source == "staff" and passage.created_by_id == actors.staff.pk
    empty = staff_client.post(f"{CUSTOMERS}{actors.customer.pk}/passages/add/", {"text": "   "})
    assert empty.status_code == 302
    assert actors.customer.passages.filter(text="").count() == 0


def test_another_organisations_pages_are_404(actors, memory):
    client = Client()
    client.force_login(actors.other_staff)
    for url in [
        f"{CUSTOMERS}{actors.customer.pk}/change/",
        f"{CUSTOMERS}{actors.customer.pk}/history/",
        f"/admin/memory/memoryblock/{memory.customer_block.pk}/change/",
        f"/admin/memory/memoryblock/{memory.customer_block.pk}/history/",
        f"/admin/memory/memoryblock/{memory.customer_block.pk}/revert/?history_id=1",
        f"/admin/support_agent/agentrun/{memory.run.pk}/change/",
        f"/admin/support_agent/agentstep/{memory.step.pk}/change/",
        f"/admin/memory/pendingmemoryedit/{memory.approve_me.pk}/change/",
        f"/admin/memory/archivalpassage/{memory.current_passage.pk}/change/",
        f"/admin/memory/archivalpassage/{memory.current_passage.pk}/delete/",
        f"{CUSTOMERS}999999/change/",
        f"{CUSTOMERS}not-a-number/change/",
    ]:
        assert client.get(url).status_code == 404, url
    for url, data in [
        (f"/admin/memory/memoryblock/{memory.customer_block.pk}/change/", {"value": "x", "reason": "r"}),
        (f"/admin/memory/memoryblock/{memory.customer_block.pk}/pin/", {"pinned": "1"}),
        (f"{CUSTOMERS}{actors.customer.pk}/passages/add/", {"text": "planted"}),
        ("/admin/memory/pendingmemoryedit/decide/", {"one": f"approve:{memory.approve_me.pk}"}),
    ]:
        assert client.post(url, data).status_code in (403, 404), url
    memory.customer_block.refresh_from_db()
    assert WRONG_FACT in memory.customer_block.value and not memory.customer_block.read_only
    assert not actors.customer.passages.filter(text="planted").exists()


def test_lists_are_scoped_to_the_organisation(actors, memory):
    client = Client()
    client.force_login(actors.other_staff)
    for url in [
        CUSTOMERS,
        "/admin/memory/memoryblock/",
        "/admin/memory/pendingmemoryedit/",
        "/admin/memory/archivalpassage/",
        "/admin/support_agent/agentrun/",
    ]:
        response = client.get(url)
        assert response.status_code == 200, url
        assert b"Dana" not in response.content, url
    assert b"Reader firmware" not in client.get("/admin/memory/archivalpassage/", {"q": "firmware"}).content


def test_a_superuser_sees_every_organisation(actors, memory):
    from django.contrib.auth import get_user_model

    root = get_user_model().objects.create_superuser(username="root", password="pw-root", email="root@example.com")
    client = Client()
    client.force_login(root)
    listing = client.get(CUSTOMERS).content
    assert b"Dana Whitfield" in listing and b"Sam Stranger" in listing
    assert client.get(f"{CUSTOMERS}{actors.stranger.pk}/change/").status_code == 200
    assert client.get(f"/admin/memory/memoryblock/{memory.stranger_block.pk}/history/").status_code == 200
    queue = client.get("/admin/memory/pendingmemoryedit/").content.decode()
    assert f'value="approve:{memory.approve_me.pk}"' in queue


def test_default_blocks_can_be_created_for_a_customer_without_memory(staff_client, actors):
    url = f"{CUSTOMERS}{actors.other_customer.pk}/change/"
    assert b"Create the default blocks now" in staff_client.get(url).content
    assert staff_client.get(f"{CUSTOMERS}{actors.other_customer.pk}/blocks/ensure/").status_code == 302  # GET: no write
    assert not actors.other_customer.memory_blocks.exists()
    staff_client.post(f"{CUSTOMERS}{actors.other_customer.pk}/blocks/ensure/")
    labels = sorted(actors.other_customer.memory_blocks.values_list("label", flat=True))
    assert labels == ["customer", "open_issues", "preferences"]
