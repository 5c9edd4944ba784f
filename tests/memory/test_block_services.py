"""Core memory edits: versioned, with provenance, pinned blocks refused to the agent, review queue."""

from __future__ import annotations

import pytest

from memory.models import ChangeSource, PendingMemoryEdit
from memory.services import (
    BlockReadOnly,
    MemoryEditError,
    Provenance,
    VersionConflict,
    block_agent_edit,
    block_revert,
    block_set_pinned,
    block_set_value,
    blocks_ensure,
    pending_edit_approve,
    pending_edit_reject,
)

AGENT = Provenance(source=ChangeSource.AGENT, agent_run_id=5, agent_step_id=9, reason="customer said so")


@pytest.fixture
def block(actors):
    blocks_ensure(customer=actors.customer)
    return actors.customer.memory_blocks.get(label="preferences")


def test_agent_edit_is_versioned_with_provenance(block):
    outcome = block_agent_edit(block=block, operation="append", new_content="Prefers email.", provenance=AGENT)
    assert outcome.applied and outcome.block.version == 2
    latest = block.history.first()
    assert (latest.change_source, latest.agent_run_id, latest.agent_step_id) == ("agent", 5, 9)
    assert latest.history_change_reason == "customer said so"


def test_replace_must_match_exactly_once(block):
    block_set_value(block=block, value="email. email.", provenance=Provenance())
    with pytest.raises(MemoryEditError, match="2 times"):
        block_agent_edit(block=block, operation="replace", old_content="email.", new_content="x", provenance=AGENT)
    with pytest.raises(MemoryEditError, match="not found"):
        block_agent_edit(block=block, operation="replace", old_content="phone", new_content="x", provenance=AGENT)


def test_pinned_block_refuses_agent_but_not_staff(block, actors):
    block_set_pinned(block=block, pinned=True, provenance=Provenance(source=ChangeSource.STAFF, user=actors.staff))
    with pytest.raises(BlockReadOnly):
        block_agent_edit(block=block, operation="append", new_content="x", provenance=AGENT)
    staff_edit = Provenance(source=ChangeSource.STAFF, user=actors.staff, reason="fix")
    assert block_set_value(block=block, value="Staff value", provenance=staff_edit).value == "Staff value"


def test_optimistic_concurrency(block):
    block_set_value(block=block, value="v2", provenance=Provenance(), expected_version=1)
    with pytest.raises(VersionConflict):
        block_set_value(block=block, value="v3", provenance=Provenance(), expected_version=1)


def test_revert_adds_a_version(block):
    block_set_value(block=block, value="first", provenance=Provenance())
    first = block.history.first()
    block_set_value(block=block, value="second", provenance=Provenance())
    reverted = block_revert(block=block, history_id=first.history_id, provenance=Provenance(reason="oops"))
    assert reverted.value == "first" and reverted.version == 4
    assert block.history.count() == 4


def test_approval_queue_applies_only_approved(block, actors):
    actors.org.memory_edits_need_approval = True
    actors.org.save()
    one = block_agent_edit(block=block, operation="append", new_content="Likes phone calls.", provenance=AGENT)
    two = block_agent_edit(block=block, operation="append", new_content="Speaks Portuguese.", provenance=AGENT)
    assert not one.applied and one.pending.status == PendingMemoryEdit.Status.PENDING
    block.refresh_from_db()
    assert block.value == ""
    pending_edit_approve(edit=one.pending, user=actors.reviewer)
    pending_edit_reject(edit=two.pending, user=actors.reviewer)
    block.refresh_from_db()
    assert block.value == "Likes phone calls."
    assert block.history.first().history_user == actors.reviewer


def test_over_limit_is_accepted_but_flagged(block):
    outcome = block_agent_edit(block=block, operation="append", new_content="x" * 1600, provenance=AGENT)
    assert outcome.applied and outcome.warnings
    assert "OVER LIMIT" in outcome.block.render()


def test_approving_an_edit_that_no_longer_applies_is_recorded(block, actors):
    actors.org.memory_edits_need_approval = True
    actors.org.save()
    block_set_value(block=block, value="Prefers phone.", provenance=Provenance())
    queued = block_agent_edit(
        block=block, operation="replace", old_content="phone", new_content="email", provenance=AGENT
    ).pending
    block_set_value(block=block, value="Prefers chat.", provenance=Provenance())
    with pytest.raises(MemoryEditError, match="Could not apply"):
        pending_edit_approve(edit=queued, user=actors.reviewer)
    queued.refresh_from_db()
    assert queued.status == PendingMemoryEdit.Status.CONFLICT
    block.refresh_from_db()
    assert block.value == "Prefers chat."
