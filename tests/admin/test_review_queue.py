"""The review queue: pending agent edits across the organisation, approved or rejected by memory reviewers only."""

from __future__ import annotations

import pytest
from django.test import Client

from memory.models import ChangeSource, PendingMemoryEdit
from memory.services import Provenance, block_set_value

QUEUE = "/admin/memory/pendingmemoryedit/"
DECIDE = "/admin/memory/pendingmemoryedit/decide/"


@pytest.fixture
def reviewer_client(actors) -> Client:
    client = Client()
    client.force_login(actors.reviewer)
    return client


def statuses(memory) -> tuple[str, str]:
    memory.approve_me.refresh_from_db()
    memory.reject_me.refresh_from_db()
    return memory.approve_me.status, memory.reject_me.status


def test_the_queue_shows_diff_customer_run_and_prompting_message(reviewer_client, memory):
    html = reviewer_client.get(QUEUE).content.decode()
    assert f'id="edit-{memory.approve_me.pk}"' in html and f'id="edit-{memory.reject_me.pk}"' in html
    assert "<ins>Likes numbered steps.</ins>" in html
    assert "<del>email</del>" in html and "<ins>phone calls at night</ins>" in html
    assert "Dana Whitfield" in html
    assert f"#step-{memory.step.pk}" in html
    assert "89 USD each time" in html
    assert f'value="approve:{memory.approve_me.pk}"' in html


def test_approve_many_at_once(reviewer_client, actors, memory):
    reviewer_client.post(
        DECIDE, {"decision": "approve", "selected": [memory.approve_me.pk, memory.reject_me.pk], "note": "ok"}
    )
    assert statuses(memory) == ("approved", "approved")
    memory.preferences.refresh_from_db()
    assert memory.preferences.value == "Prefers phone calls at night over phone.\nLikes numbered steps."
    latest = memory.preferences.history.order_by("-history_id").first()
    assert latest.change_source == ChangeSource.AGENT and latest.history_user_id == actors.reviewer.pk
    assert latest.agent_step_id == memory.step.pk


def test_reject_one(reviewer_client, memory):
    reviewer_client.post(DECIDE, {"one": f"reject:{memory.reject_me.pk}", "note": "not what she said"})
    assert statuses(memory) == ("pending", "rejected")
    assert memory.reject_me.decision_note == "not what she said"
    memory.preferences.refresh_from_db()
    assert memory.preferences.value == "Prefers email over phone."
    decided = Client()
    decided.force_login(memory.reject_me.decided_by)
    assert b"not what she said" in decided.get(QUEUE, {"status": "rejected"}).content


def test_an_edit_that_no_longer_applies_is_reported_not_applied(reviewer_client, actors, memory):
    block_set_value(
        block=memory.preferences,
        value="Prefers the phone.",
        provenance=Provenance(source=ChangeSource.STAFF, user=actors.staff, reason="called her"),
    )
    queue = reviewer_client.get(QUEUE).content.decode()
    assert "Approving would fail" in queue  # the replace's old text is gone
    response = reviewer_client.post(DECIDE, {"one": f"approve:{memory.reject_me.pk}"}, follow=True)
    assert "was not found in the block" in response.content.decode()
    # pending_edit_approve marks the edit "conflict" but raises inside its own transaction, which rolls the mark
    # back: the edit stays pending for the reviewer to reject.
    assert statuses(memory)[1] in ("pending", "conflict")
    memory.preferences.refresh_from_db()
    assert memory.preferences.value == "Prefers the phone."


def test_support_staff_read_the_queue_but_cannot_decide(actors, memory):
    client = Client()
    client.force_login(actors.staff)
    page = client.get(QUEUE)
    assert page.status_code == 200
    assert b"Memory reviewers" in page.content and b"approve:" not in page.content
    assert client.post(DECIDE, {"one": f"approve:{memory.approve_me.pk}"}).status_code == 403
    assert statuses(memory) == ("pending", "pending")


def test_bad_decisions_change_nothing(reviewer_client, memory):
    for data in [
        {"decision": "approve"},
        {"decision": "delete", "selected": [memory.approve_me.pk]},
        {"decision": "approve", "selected": ["x"]},
        {"one": f"approve:{memory.approve_me.pk}", "note": "n" * 61},
    ]:
        assert reviewer_client.post(DECIDE, data).status_code == 302
    assert reviewer_client.post(DECIDE, {"decision": "approve", "selected": [987654]}).status_code == 404
    assert statuses(memory) == ("pending", "pending")
    assert PendingMemoryEdit.objects.filter(status="pending").count() == 2


def test_a_decided_edit_cannot_be_decided_again(reviewer_client, memory):
    reviewer_client.post(DECIDE, {"one": f"approve:{memory.approve_me.pk}"})
    response = reviewer_client.post(DECIDE, {"one": f"reject:{memory.approve_me.pk}"}, follow=True)
    assert b"already approved" in response.content
    assert statuses(memory) == ("approved", "pending")
