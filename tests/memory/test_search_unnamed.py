"""Step 6 of the learned ranking: each candidate's similarity to the query's vector less the vectors of the names of
the customer's conversations' people that it mentions (docs/recall.md). A turn is embedded as "<author>: <text>", so
a named query is near whatever that person wrote; without the names' share it is nearer the turn about its topic.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from memory import selectors
from memory.embeddings import message_embeddings_compute, passage_embeddings_compute, query_cache_clear
from memory.query_parts import name_words, named_words
from memory.services import Provenance, passage_insert
from tests.memory import fake_embedder
from tests.memory.fake_embedder import use_fake
from tests.memory.learned_pools import cosine, pool_of
from tickets.models import TicketMessage
from tickets.services import TicketChanges, message_ingest, ticket_upsert

WHEN = datetime(2025, 3, 12, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("query", "names", "named"),
    [
        ("Which cities did Dana visit?", ["Dana Whitfield", "Sam"], ["dana"]),
        ("What is Dana's router called?", ["Dana Whitfield"], ["dana"]),
        (
            "What did Whitfield tell Sam about Dana's 2 refunds?",
            ["Dana Whitfield", "Sam"],
            ["dana", "sam", "whitfield"],
        ),
        ("WHAT DID DANA\u2019S TEAM BUY?", ["dana"], ["dana"]),
        ("Which cities were visited?", ["Dana Whitfield", "Sam"], []),  # no one named: the query's own vector
        ("Which router did Samantha buy?", ["Sam"], []),  # a whole word only
        ("Which router?", [], []),
    ],
)
def test_named_words(query, names, named):
    assert named_words(query, names) == named


def test_name_words_are_every_word_of_every_name():
    assert name_words(["Dana Whitfield", "", "O'Brien-Lee"]) == {"dana", "whitfield", "o'brien", "lee"}


def _unit(vector):
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector]


def _less_names(query_vector, name_vectors):
    """What search makes of the query's vector: less UNNAMED_NAME_WEIGHT x the names' mean vector, at unit length."""
    mean = [sum(column) / len(name_vectors) for column in zip(*name_vectors, strict=True)]
    return _unit([q - selectors.UNNAMED_NAME_WEIGHT * m for q, m in zip(query_vector, mean, strict=True)])


@pytest.fixture
def fake(settings, monkeypatch):
    # The fake embedder reads "dana" as a concept of its own: an author's name in "<author>: <text>" then weighs in
    # the vector as a name does in a real model's.
    monkeypatch.setitem(fake_embedder.CONCEPTS, "dana", 6)
    query_cache_clear()
    yield use_fake(settings)
    query_cache_clear()


def _say(actors, body, *, author, seconds, customer=None):
    customer = customer or actors.customer
    ticket = ticket_upsert(
        organization=actors.org,
        customer=customer,
        integration_id=None,
        external_id=f"unnamed-{customer.pk}",
        changes=TicketChanges(subject="chat", channel="chat"),
        created_at=WHEN,
        source_updated_at=WHEN,
    )
    message, _ = message_ingest(
        customer=customer,
        ticket=ticket,
        body=body,
        author_role=TicketMessage.Role.CUSTOMER,
        author_name=author,
        created_at=WHEN + timedelta(seconds=seconds),
        announce=False,
    )
    return message


def test_a_candidates_similarity_to_the_query_without_names_is_read_with_its_vector(actors, fake, monkeypatch):
    router = _say(actors, "My router died again.", author="Dana Whitfield", seconds=0)
    thanks = _say(actors, "Thanks for the help!", author="Dana Whitfield", seconds=1)
    # Another customer's author is not one of this customer's people: "Router" stays in this customer's query.
    _say(actors, "Hello.", author="Router Jones", seconds=0, customer=actors.other_customer)
    message_embeddings_compute(message_ids=[router.pk, thanks.pk])
    fake.calls.clear()

    query = "What router problem did Dana have?"
    pool = pool_of(monkeypatch, lambda: selectors.message_search(customer=actors.customer, query=query))
    # Embedded: the query, and the one name word it mentions (the other customer's "Router" is not a name here).
    assert sorted(call[0] for call in fake.calls) == sorted([query, "dana"])
    # "Dana Whitfield: My router died again." is (router + dana) / sqrt 2; thanks is dana only.
    assert pool[router.pk].sim == pytest.approx(1.0, abs=1e-6)
    assert pool[thanks.pk].sim == pytest.approx(0.5**0.5, abs=1e-6)
    unnamed = _less_names(fake.embed([query])[0], fake.embed(["dana"]))
    for message in (router, thanks):
        stored = fake.embed([f"{message.author_name}: {message.body}"])[0]
        assert pool[message.pk].unnamed == pytest.approx(cosine(stored, unnamed), abs=1e-6)
    assert pool[router.pk].unnamed > 0.7 > 0.1 > pool[thanks.pk].unnamed  # the name's weight is mostly gone

    # A name's vector is cached like a query's: the next search naming Dana embeds only its query.
    fake.calls.clear()
    pool_of(monkeypatch, lambda: selectors.message_search(customer=actors.customer, query="Dana's modem?"))
    assert fake.calls == [["Dana's modem?"]]

    # A query naming no one is embedded once, and the candidates' meaning stands for the unnamed feature.
    fake.calls.clear()
    pool = pool_of(monkeypatch, lambda: selectors.message_search(customer=actors.customer, query="router problem"))
    assert fake.calls == [["router problem"]]
    assert all(candidate.unnamed is None for candidate in pool.values())


def test_the_unnamed_similarity_ranks_the_turn_about_the_topic_over_the_named_persons_other_turn(
    actors, fake, monkeypatch
):
    other = _say(
        actors, "Dana here, hello! Dana again, glad to chat with you today.", author="Dana Whitfield", seconds=0
    )
    topic = _say(actors, "My router was billed twice for the refund.", author="Dana Whitfield", seconds=1)
    message_embeddings_compute(message_ids=[topic.pk, other.pk])

    def first(query):
        return selectors.message_search(customer=actors.customer, query=query, page_size=1).results[0].pk

    # No word of the query is in the topic turn ("modem" is not "router"). By meaning, "Dana" pulls towards Dana's
    # other turn (cosine 0.71 against 0.63), which also has her name in its words and opens the conversation; without
    # the name, only the topic turn is near ("modem" is "router" to this embedder).
    query = "Which modem did Dana get?"
    assert first(query) == topic.pk
    monkeypatch.setattr(selectors, "LEARNED_UNNAMED", 0.0)
    assert first(query) == other.pk


def test_passages_read_the_unnamed_similarity_too(actors, fake, monkeypatch):
    message = _say(actors, "My router died again.", author="Dana Whitfield", seconds=0)
    provenance = Provenance(reason="test")
    made, _ = passage_insert(
        organization=actors.org,
        customer=actors.customer,
        text="Dana Whitfield: My router died again.",
        provenance=provenance,
        source_message_id=message.pk,
    )
    loose, _ = passage_insert(
        organization=actors.org, customer=actors.customer, text="Dana asked about it.", provenance=provenance
    )
    passage_embeddings_compute(passage_ids=[made.pk, loose.pk])

    def search(customer):
        return lambda: selectors.passage_search(organization=actors.org, customer=customer, query="Dana's router?")

    pool = pool_of(monkeypatch, search(actors.customer))
    unnamed = _less_names(fake.embed(["Dana's router?"])[0], fake.embed(["dana"]))
    for passage in (made, loose):
        stored = fake.embed([passage.text])[0]
        assert pool[passage.pk].unnamed == pytest.approx(cosine(stored, unnamed), abs=1e-6)
    # Organisation-wide there is no one customer's people to leave out: the meaning stands for it.
    pool = pool_of(monkeypatch, search(None))
    assert {pk: c.unnamed for pk, c in pool.items()} == {made.pk: None, loose.pk: None}
