"""Staff correct core memory: edit with a reason, history with who/why/prompting message, diff, revert, pin."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from memory.admin import diff_html
from memory.models import MemoryBlock
from tests.admin.conftest import RIGHT_FACT, WRONG_FACT
from tickets.models import StaffMembership


@pytest.fixture
def staff_client(actors) -> Client:
    client = Client()
    client.force_login(actors.staff)
    return client


def block_url(block: MemoryBlock, action: str) -> str:
    return f"/admin/memory/memoryblock/{block.pk}/{action}/"


def test_edit_with_a_reason_makes_a_new_version_with_provenance(staff_client, actors, memory):
    block = memory.customer_block
    response = staff_client.post(
        block_url(block, "change"),
        {"value": f"{RIGHT_FACT}\r\nUses the Northwind POS sync.", "reason": "confirmed", "expected_version": 2},
    )
    assert response.status_code == 302
    assert response["Location"] == f"/admin/support_agent/customermemory/{actors.customer.pk}/change/"
    block.refresh_from_db()
    assert block.value == f"{RIGHT_FACT}\nUses the Northwind POS sync."  # CRLF from the browser normalised
    assert block.version == 3
    latest = block.history.order_by("-history_id").first()
    assert (latest.change_source, latest.history_user_id, latest.history_change_reason) == (
        "staff",
        actors.staff.pk,
        "confirmed",
    )


def test_an_edit_needs_a_reason_and_must_fit_the_limit(staff_client, memory):
    block = memory.customer_block
    no_reason = staff_client.post(block_url(block, "change"), {"value": "x", "reason": "", "expected_version": 2})
    assert no_reason.status_code == 200 and b"This field is required" in no_reason.content
    too_long = staff_client.post(
        block_url(block, "change"), {"value": "x" * 2001, "reason": "r", "expected_version": 2}
    )
    assert too_long.status_code == 200 and b"the block&#x27;s limit is 2000" in too_long.content
    long_reason = staff_client.post(
        block_url(block, "change"), {"value": "x", "reason": "r" * 101, "expected_version": 2}
    )
    assert long_reason.status_code == 200
    block.refresh_from_db()
    assert block.version == 2 and WRONG_FACT in block.value


def test_a_stale_edit_is_refused_and_shows_the_newer_version(staff_client, memory):
    block = memory.customer_block
    stale = staff_client.post(block_url(block, "change"), {"value": "mine", "reason": "r", "expected_version": 1})
    assert stale.status_code == 200
    assert b"now at version 2" in stale.content
    assert b'name="expected_version" value="2"' in stale.content  # saving again is an informed overwrite
    html = stale.content.decode()
    assert 'id="stale-edit"' in html  # the newer text is shown, not hidden behind the refused one
    current = html.split('id="stale-edit-current">', 1)[1].split("</pre>", 1)[0]
    block.refresh_from_db()
    assert block.value.splitlines()[0] in current
    assert "<ins>mine</ins>" in html  # and what the refused save would change in it
    assert "Replace version 2 with my text" in html
    block.refresh_from_db()
    assert block.value != "mine"


def test_history_shows_who_why_and_the_prompting_message(staff_client, memory):
    block = memory.customer_block
    html = staff_client.get(block_url(block, "history")).content.decode()
    assert f"#step-{memory.step.pk}" in html
    assert "customer described their business" in html
    assert "89 USD each time" in html  # the prompting message, quoted
    assert "default block created" in html
    assert '<tr class="sm-diff-ins">' in html  # the latest change (empty to the fact) as a diff


def test_diff_between_any_two_versions(staff_client, memory):
    block = memory.customer_block
    first, second = block.history.order_by("history_id")[:2]
    html = staff_client.get(block_url(block, "history"), {"a": first.history_id, "b": second.history_id})
    assert b"Changes from version 1" in html.content
    foreign = memory.stranger_block.history.first().history_id
    assert staff_client.get(block_url(block, "history"), {"a": foreign}).status_code == 404
    assert staff_client.get(block_url(block, "history"), {"a": "x"}).status_code == 404


def test_revert_makes_a_new_version_and_keeps_history(staff_client, memory):
    block = memory.customer_block
    first = block.history.order_by("history_id").first()
    confirm = staff_client.get(block_url(block, "revert"), {"history_id": first.history_id})
    assert confirm.status_code == 200 and b"Revert to version 1" in confirm.content
    staff_client.post(block_url(block, "revert"), {"history_id": first.history_id, "reason": ""})
    block.refresh_from_db()
    assert block.value == "" and block.version == 3
    assert block.history.count() == 3
    latest = block.history.order_by("-history_id").first()
    assert latest.history_change_reason == "reverted to version 1" and latest.change_source == "staff"
    missing = staff_client.post(block_url(block, "revert"), {"history_id": 987654})
    assert missing.status_code == 404


def test_pin_and_unpin(staff_client, memory):
    block = memory.customer_block
    staff_client.post(block_url(block, "pin"), {"pinned": "1"})
    block.refresh_from_db()
    assert block.read_only
    assert block.history.order_by("-history_id").first().history_change_reason == "pinned"
    staff_client.post(block_url(block, "pin"), {"pinned": "0"})
    block.refresh_from_db()
    assert not block.read_only


def test_a_read_only_staff_member_cannot_change_memory(actors, memory):
    viewer = get_user_model().objects.create_user(username="viewer", password="pw", is_staff=True)
    StaffMembership.objects.create(user=viewer, organization=actors.org)
    viewer.user_permissions.set(Permission.objects.filter(codename__in=["view_memoryblock", "view_customermemory"]))
    client = Client()
    client.force_login(viewer)
    block = memory.customer_block
    page = client.get(block_url(block, "change"))
    assert page.status_code == 200 and b"You can read this block but not change it" in page.content
    edit = {"value": "x", "reason": "r", "expected_version": 2}
    assert client.post(block_url(block, "change"), edit).status_code == 403
    assert client.post(block_url(block, "pin"), {"pinned": "1"}).status_code == 403
    block.refresh_from_db()
    assert block.version == 2 and not block.read_only


def test_diff_html_marks_changed_words_and_escapes_text():
    html = diff_html("Plan: <Starter>\nsame line", "Plan: <Business>\nsame line\nnew line")
    assert "<del>Starter</del>" in html and "<ins>Business</ins>" in html
    assert "&lt;" in html and "<Starter>" not in html
    assert '<tr class="sm-diff-same">' in html and "<ins>new line</ins>" in html
    assert "No differences" in diff_html("same", "same")


def test_after_saving_staff_return_only_to_pages_of_this_site(staff_client, memory):
    block = memory.customer_block
    edit = {"value": "v", "reason": "r", "expected_version": 2}
    back = staff_client.post(block_url(block, "change"), {**edit, "next": "/admin/memory/memoryblock/"})
    assert back["Location"] == "/admin/memory/memoryblock/"
    edit["expected_version"] = 3
    away = staff_client.post(block_url(block, "change"), {**edit, "value": "w", "next": "https://evil.example/"})
    assert away["Location"].startswith("/admin/support_agent/customermemory/")
