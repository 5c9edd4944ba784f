"""Step 7 of the learned ranking: each sentence of a turn of two or more is embedded too, and a candidate's best
sentence is one more feature (memory/sentences.py, docs/recall.md). Stored with the turn's own vector, filled in for
rows embedded before (``embed_pending``), copied to passages by ``memory_eval``, read by search."""

from __future__ import annotations

import math
import threading
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta

import pytest
from django.db import DatabaseError

from memory import embeddings, selectors
from memory.embeddings import (
    embeddings_embed_pending,
    message_embeddings_compute,
    message_sentences_compute,
    passage_embeddings_compute,
    query_cache_clear,
)
from memory.models import ArchivalPassage, MessageEmbedding, SentenceEmbedding
from memory.receivers import embed_after_import, embed_imported_messages
from memory.sentences import sentence_texts, sentences
from memory.services import Provenance, passage_insert, passage_update_text
from memory.tasks import embed_pending_task
from tests.conftest import build_actors
from tests.memory import fake_embedder
from tests.memory.fake_embedder import use_fake
from tests.memory.learned_pools import cosine, pool_of
from tickets.models import TicketMessage
from tickets.services import TicketChanges, message_ingest, ticket_upsert

WHEN = datetime(2025, 3, 12, 9, 0, tzinfo=UTC)


@pytest.fixture
def fake(settings):
    query_cache_clear()
    yield use_fake(settings)
    query_cache_clear()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Thanks! My router broke. Can you help?", ["Thanks!", "My router broke.", "Can you help?"]),
        ("One sentence only.", []),  # the turn is its one sentence: nothing more to embed
        ("Look at this. [shares a photo of a router]", ["Look at this.", "[shares a photo of a router]"]),
        ("Version 2.5 is out... finally!  Really?", ["Version 2.5 is out...", "finally!", "Really?"]),
        ("", []),
    ],
)
def test_sentences(text, expected):
    assert sentences(text) == expected


def test_each_sentence_is_embedded_as_its_turn_is_with_its_author():
    assert sentence_texts("Dana", "Hi! It broke.") == ["Dana: Hi!", "Dana: It broke."]
    assert sentence_texts("", "Hi! It broke.") == ["Hi!", "It broke."]


def _say(actors, body, *, seconds, author="Dana Whitfield", ticket="chat"):
    chat = ticket_upsert(
        organization=actors.org,
        customer=actors.customer,
        integration_id=None,
        external_id=f"sentences-{ticket}",
        changes=TicketChanges(subject=ticket, channel="chat"),
        created_at=WHEN,
        source_updated_at=WHEN,
    )
    message, _ = message_ingest(
        customer=actors.customer,
        ticket=chat,
        body=body,
        author_role=TicketMessage.Role.CUSTOMER,
        author_name=author,
        created_at=WHEN + timedelta(seconds=seconds),
        announce=False,
    )
    return message


def _stored(**owner):
    rows = SentenceEmbedding.objects.filter(**owner).order_by("position")
    return [(row.position, row.model, [round(x, 4) for x in row.embedding]) for row in rows]


def _vectors(fake, texts):
    return [[round(x, 4) for x in vector] for vector in fake.embed(texts)]


def test_a_message_is_embedded_with_its_sentences_and_a_re_embedding_replaces_them(actors, fake):
    long = _say(actors, "Thanks for the refund! My router broke.", seconds=0)
    short = _say(actors, "My printer is fine.", seconds=1)
    assert message_embeddings_compute(message_ids=[long.pk, short.pk]) == 2

    expected = _vectors(fake, ["Dana Whitfield: Thanks for the refund!", "Dana Whitfield: My router broke."])
    assert _stored(message=long) == [(0, fake.name, expected[0]), (1, fake.name, expected[1])]
    assert _stored(message=short) == []
    assert MessageEmbedding.objects.get(pk=long.pk).sentence_count == 2
    assert MessageEmbedding.objects.get(pk=short.pk).sentence_count == 0
    # The turn's own vector is the whole text's, embedded in a call of its own (not the sentences' call).
    assert ["Dana Whitfield: Thanks for the refund! My router broke.", "Dana Whitfield: My printer is fine."] in (
        fake.calls
    )

    TicketMessage.objects.filter(pk=long.pk).update(body="The modem works. The invoice came. Thanks!")
    message_embeddings_compute(message_ids=[long.pk])
    assert [position for position, _, _ in _stored(message=long)] == [0, 1, 2]
    assert MessageEmbedding.objects.get(pk=long.pk).sentence_count == 3


def test_rows_embedded_before_sentences_were_get_them_from_embed_pending(actors, fake):
    """The backfill: a row with its vector but no sentence count (what the migration leaves) gets its sentences; its
    own vector is not computed again."""
    message = _say(actors, "Thanks for the refund! My router broke.", seconds=0)
    passage, _ = passage_insert(
        organization=actors.org,
        customer=actors.customer,
        text="Dana Whitfield: Thanks for the refund! My router broke.",
        provenance=Provenance(reason="test"),
        source_message_id=message.pk,
    )
    loose, _ = passage_insert(
        organization=actors.org,
        customer=actors.customer,
        text="Prefers email. Owns a LaserJet printer.",
        provenance=Provenance(reason="test"),
    )
    embeddings_embed_pending(organization_id=actors.org.pk)  # the actors' history too
    SentenceEmbedding.objects.all().delete()
    MessageEmbedding.objects.update(sentence_count=None)
    ArchivalPassage.objects.update(sentence_count=None)
    vector_before = list(MessageEmbedding.objects.get(pk=message.pk).embedding)
    fake.calls.clear()

    outcome = embeddings_embed_pending(organization_id=actors.org.pk)

    assert (outcome.messages, outcome.passages) == (MessageEmbedding.objects.count(), 2)
    turn = _vectors(fake, ["Dana Whitfield: Thanks for the refund!", "Dana Whitfield: My router broke."])
    assert [vector for _, _, vector in _stored(message=message)] == turn
    # A passage made from a turn has that turn's sentences; any other passage its sentences as they are.
    assert [vector for _, _, vector in _stored(passage=passage)] == turn
    assert [v for _, _, v in _stored(passage=loose)] == _vectors(fake, ["Prefers email.", "Owns a LaserJet printer."])
    assert list(MessageEmbedding.objects.get(pk=message.pk).embedding) == vector_before
    assert not any("refund! My" in text for call in fake.calls for text in call)  # no whole text embedded again
    assert sorted(ArchivalPassage.objects.values_list("sentence_count", flat=True)) == [2, 2]
    # Nothing left to do.
    assert embeddings_embed_pending(organization_id=actors.org.pk).messages == 0


def test_a_sweep_fills_in_at_most_its_share_of_sentences_and_the_next_goes_on(actors, fake):
    messages = [_say(actors, f"Thanks! Router {n} broke.", seconds=n) for n in range(5)]
    embeddings_embed_pending(organization_id=actors.org.pk)
    SentenceEmbedding.objects.filter(message__in=messages).delete()
    MessageEmbedding.objects.filter(message__in=messages).update(sentence_count=None)
    pending = MessageEmbedding.objects.filter(message__in=messages, sentence_count__isnull=True)

    assert embeddings_embed_pending(organization_id=actors.org.pk, sentence_rows=2, batch_size=3).messages == 2
    assert pending.count() == 3
    embed_pending_task(organization_id=actors.org.pk)  # the periodic sweep's share is larger: the rest
    assert pending.count() == 0
    assert all(len(_stored(message=m)) == 2 for m in messages)


def test_an_import_embeds_whole_texts_and_leaves_their_sentences_to_the_sweep(actors, fake):
    message = _say(actors, "Thanks for the refund! My router broke.", seconds=0)

    assert embed_imported_messages(sender=None, message_ids=[message.pk]) == 1
    embed_after_import(sender=None, organization_id=actors.org.pk)  # what a finished import runs: no sentences

    row = MessageEmbedding.objects.get(pk=message.pk)
    assert row.sentence_count is None  # pending: search reads the whole text's vector meanwhile
    assert _stored(message=message) == []
    assert not any("Dana Whitfield: My router broke." in call for call in fake.calls)
    embed_pending_task(organization_id=actors.org.pk)
    assert MessageEmbedding.objects.get(pk=message.pk).sentence_count == 2
    assert [position for position, _, _ in _stored(message=message)] == [0, 1]


def test_two_sweeps_at_once_store_a_messages_sentences_once(actors, fake, monkeypatch):
    """A sweep that finds a row done by another sweep while it embedded (the second waits on the first's row lock,
    then sees the count set) stores nothing for it."""
    message = _say(actors, "Thanks for the refund! My router broke.", seconds=0)
    embeddings_embed_pending(organization_id=actors.org.pk)
    SentenceEmbedding.objects.all().delete()
    MessageEmbedding.objects.update(sentence_count=None)
    embed = embeddings._sentence_vectors
    overtaken = []

    def other_sweep_first(sentences, embedder):
        if not overtaken:
            overtaken.append(True)
            message_sentences_compute(message_ids=list(sentences))  # the other sweep, done while this one embeds
        return embed(sentences, embedder)

    monkeypatch.setattr(embeddings, "_sentence_vectors", other_sweep_first)
    assert message_sentences_compute(message_ids=[message.pk]) == 0  # the other sweep's work, not this one's
    assert overtaken
    assert [position for position, _, _ in _stored(message=message)] == [0, 1]


def test_search_reads_each_candidates_best_sentence(actors, fake, monkeypatch):
    long = _say(actors, "Thanks for the refund! It was billed twice. My router broke.", seconds=0)
    short = _say(actors, "Modem news and a refund.", seconds=1, ticket="other")
    message_embeddings_compute(message_ids=[long.pk, short.pk])

    pool = pool_of(monkeypatch, lambda: selectors.message_search(customer=actors.customer, query="wifi?"))
    # "Dana Whitfield: My router broke." is the query's concept alone; the whole turn is four concepts.
    assert pool[long.pk].sim == pytest.approx(0.5, abs=1e-6)
    assert pool[long.pk].sentence == pytest.approx(1.0, abs=1e-6)
    assert pool[short.pk].sim == pytest.approx(math.sqrt(0.5), abs=1e-6)
    assert pool[short.pk].sentence is None  # one sentence: its own similarity stands for it

    # The turn whose one sentence is about the query's topic now comes first; without the feature, the short turn
    # that is nearer as a whole would.
    def order():
        found = [m.pk for m in selectors.message_search(customer=actors.customer, query="wifi?").results]
        return [pk for pk in found if pk in {long.pk, short.pk}]

    assert order() == [long.pk, short.pk]
    monkeypatch.setattr(selectors, "LEARNED_SENTENCE", 0.0)
    assert order() == [short.pk, long.pk]


def test_passages_read_their_sentences_too(actors, fake, monkeypatch):
    long, _ = passage_insert(
        organization=actors.org,
        customer=actors.customer,
        text="Thanks for the refund! It was billed twice. My router broke.",
        provenance=Provenance(reason="test"),
    )
    passage_embeddings_compute(passage_ids=[long.pk])

    def search(customer):
        return lambda: selectors.passage_search(organization=actors.org, customer=customer, query="wifi?")

    for customer in (actors.customer, None):  # one customer's passages, and the organisation's (staff)
        pool = pool_of(monkeypatch, search(customer))
        assert pool[long.pk].sim == pytest.approx(0.5, abs=1e-6)
        assert pool[long.pk].sentence == pytest.approx(1.0, abs=1e-6)


def test_a_sentence_is_read_against_the_query_without_the_names(actors, fake, monkeypatch):
    monkeypatch.setitem(fake_embedder.CONCEPTS, "dana", 6)
    long = _say(actors, "Thanks for the refund! My router broke.", seconds=0)
    message_embeddings_compute(message_ids=[long.pk])
    query = "Dana's wifi?"
    pool = pool_of(monkeypatch, lambda: selectors.message_search(customer=actors.customer, query=query))
    unnamed = selectors._unnamed_vector(
        fake.name, fake.embed([query])[0], [(fake.name, _done(fake.embed(["dana"])[0]))]
    )
    best = max(cosine(v, unnamed) for v in fake.embed(sentence_texts("Dana Whitfield", long.body)))
    assert pool[long.pk].sentence == pytest.approx(best, abs=1e-6)


def _done(value):
    future = Future()
    future.set_result(value)
    return future


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("vectors_kept", [True, False])
def test_the_second_connection_hands_over_the_vector_the_sentences_are_read_against(
    settings, monkeypatch, vectors_kept
):
    """With the vector features read on a second connection (the people's names read there too), the sentences are
    still read against the query without the names: the same values as on one connection."""
    fake = use_fake(settings)
    monkeypatch.setattr(selectors, "VECTORS_IN_PROCESS", vectors_kept)
    settings.SUPPORTMEM_SEARCH_CONCURRENT_READS = True
    monkeypatch.setitem(fake_embedder.CONCEPTS, "dana", 6)
    actors = build_actors()
    long = _say(actors, "Thanks for the refund! My router broke.", seconds=0)
    message_embeddings_compute(message_ids=[long.pk])
    query = "Dana's wifi?"
    handed = []
    submit = selectors._worker_submit

    def counting(function, /, **kwargs):
        handed.append(function.__name__)
        return submit(function, **kwargs)

    monkeypatch.setattr(selectors, "_worker_submit", counting)
    values = []
    for concurrent in (True, False):
        monkeypatch.setattr(selectors, "CONCURRENT_READS", concurrent)
        query_cache_clear()
        pool = pool_of(monkeypatch, lambda: selectors.message_search(customer=actors.customer, query=query))
        values.append(pool[long.pk].sentence)
    # The first search read its vector features and its sentences on the second connection (from the vectors kept in
    # the process, on this one, when they are), the second neither.
    assert handed == ([] if vectors_kept else ["_every_vector_feature", "_sentence_similarities"])
    dana = (fake.name, _done(fake.embed(["dana"])[0]))
    unnamed = selectors._unnamed_vector(fake.name, fake.embed([query])[0], [dana])
    best = max(cosine(v, unnamed) for v in fake.embed(sentence_texts("Dana Whitfield", long.body)))
    assert values == [pytest.approx(best, abs=1e-6)] * 2


@pytest.mark.django_db(transaction=True)
def test_a_failed_second_connection_reads_the_sentences_on_the_callers(settings, monkeypatch):
    fake = use_fake(settings)
    monkeypatch.setattr(selectors, "VECTORS_IN_PROCESS", False)  # the statement's path
    settings.SUPPORTMEM_SEARCH_CONCURRENT_READS = True
    actors = build_actors()
    long = _say(actors, "Thanks for the refund! My router broke.", seconds=0)
    message_embeddings_compute(message_ids=[long.pk])
    read = selectors._sentence_similarities

    def broken_on_a_worker(**kwargs):
        if threading.current_thread() is not threading.main_thread():
            raise DatabaseError("too many connections")
        return read(**kwargs)

    monkeypatch.setattr(selectors, "_sentence_similarities", broken_on_a_worker)
    pool = pool_of(monkeypatch, lambda: selectors.message_search(customer=actors.customer, query="wifi?"))
    best = max(cosine(v, fake.embed(["wifi?"])[0]) for v in fake.embed(sentence_texts("Dana Whitfield", long.body)))
    assert pool[long.pk].sentence == pytest.approx(best, abs=1e-6)


def test_a_corrected_passage_loses_the_old_texts_sentences_until_it_is_embedded_again(actors, fake, monkeypatch):
    passage, _ = passage_insert(
        organization=actors.org,
        customer=actors.customer,
        text="Thanks for the refund! My router broke.",
        provenance=Provenance(reason="test"),
    )
    passage_embeddings_compute(passage_ids=[passage.pk])
    assert len(_stored(passage=passage)) == 2
    monkeypatch.setattr("memory.receivers.embeddings_enqueue", lambda *args, **kwargs: None)  # not embedded yet
    passage_update_text(passage=passage, text="Prefers email. Owns a printer.", provenance=Provenance(reason="fix"))
    assert _stored(passage=passage) == []
    assert ArchivalPassage.objects.get(pk=passage.pk).sentence_count is None
    passage_embeddings_compute(passage_ids=[passage.pk])
    assert [v for _, _, v in _stored(passage=passage)] == _vectors(fake, ["Prefers email.", "Owns a printer."])
