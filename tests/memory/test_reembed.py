"""Re-embedding moves every row made by another model to the configured one; embed_pending fills the gaps."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from memory.models import ArchivalPassage, MessageEmbedding
from memory.services import Provenance, passage_insert
from tests.memory.fake_embedder import use_fake
from tickets.models import TicketMessage


def _passages(actors, count):
    for i in range(count):
        passage_insert(organization=actors.org, customer=actors.customer, text=f"fact {i}", provenance=Provenance())


def test_reembed_changes_the_recorded_model_of_every_row(actors, settings):
    _passages(actors, 7)
    use_fake(settings, key="fake-a", name="test/model-a")
    call_command("embed_pending", stdout=io.StringIO())
    assert set(ArchivalPassage.objects.values_list("embedding_model", flat=True)) == {"test/model-a"}
    assert MessageEmbedding.objects.count() == TicketMessage.objects.count() == 3 + 0

    model_b = use_fake(settings, key="fake-b", name="test/model-b")
    out, err = io.StringIO(), io.StringIO()
    call_command("reembed", "--batch-size", "3", stdout=out, stderr=err)
    assert set(ArchivalPassage.objects.values_list("embedding_model", flat=True)) == {"test/model-b"}
    assert set(MessageEmbedding.objects.values_list("model", flat=True)) == {"test/model-b"}
    assert "10 rows to re-embed" in out.getvalue() and "10/10" in err.getvalue()
    assert max(len(batch) for batch in model_b.calls) == 3  # in batches

    again = io.StringIO()
    call_command("reembed", stdout=again, stderr=io.StringIO())
    assert "0 rows to re-embed" in again.getvalue()


def test_reembed_resumes_after_an_interruption(actors, settings):
    _passages(actors, 6)
    use_fake(settings, key="fake-a", name="test/model-a")
    call_command("embed_pending", stdout=io.StringIO())
    model_b = use_fake(settings, key="fake-b", name="test/model-b")
    original = model_b.embed
    calls = {"n": 0}

    def failing_second_batch(texts):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed")
        return original(texts)

    model_b.embed = failing_second_batch  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        call_command("reembed", "--batch-size", "2", stdout=io.StringIO(), stderr=io.StringIO())
    done = MessageEmbedding.objects.filter(model="test/model-b").count()
    assert done == 2  # the first batch committed

    model_b.embed = original  # type: ignore[method-assign]
    out = io.StringIO()
    call_command("reembed", "--batch-size", "2", stdout=out, stderr=io.StringIO())
    assert "7 rows to re-embed" in out.getvalue()
    assert set(ArchivalPassage.objects.values_list("embedding_model", flat=True)) == {"test/model-b"}


def test_embed_pending_scoped_to_an_organisation_and_bad_slug(actors, settings):
    use_fake(settings)
    passage_insert(
        organization=actors.other_org, customer=actors.stranger, text="other org fact", provenance=Provenance()
    )
    out = io.StringIO()
    call_command("embed_pending", "--org", "acme", stdout=out)
    assert out.getvalue().strip() == "embedded 3 messages and 0 passages"
    assert ArchivalPassage.objects.get().embedding is None
    with pytest.raises(CommandError, match="No organisation"):
        call_command("embed_pending", "--org", "nope")
    with pytest.raises(CommandError, match="batch-size"):
        call_command("reembed", "--batch-size", "0")
