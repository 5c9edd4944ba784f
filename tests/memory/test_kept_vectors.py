"""One customer's message vectors kept in the process (memory/kept_vectors.py) and the candidates' facts from the
kept words (memory/postings.py): the statements' values, never stale.

Every test compares what the process computes with the statement it stands in for (``_MESSAGE_VECTOR_FEATURES_SQL``,
``_MESSAGE_SENTENCES_SQL``, ``_MESSAGE_FACTS_SQL``) on real PostgreSQL, after the customer's messages and their
vectors change in each way they can.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection

from memory import kept_vectors, postings, selectors
from memory.embeddings import message_embeddings_compute
from memory.models import MessageEmbedding, SentenceEmbedding
from support_agent.merge import customer_merge
from support_agent.privacy import customer_erase
from tests.memory.fake_embedder import use_fake
from tests.memory.test_postings import _scope
from tests.memory.test_search_statements import WHEN
from tests.memory.test_search_statements import _conversation as conversation
from tickets.models import Customer, TicketMessage
from tickets.services import message_ingest

TURNS = [
    ("Dana", "My router drops the wifi every evening. The printer is fine though."),
    ("Sam", "Which router model is it?  "),
    ("Dana", "A modem from the shop. I was billed twice for it!"),
    ("Sam", "Thanks, I will send a refund for the double charge."),
    ("Dana", "great, THE REFUND for the router outage is welcome. "),
    ("Dana", "Great, the refund for the router outage is welcome."),
]
FILTERS = [
    postings.Filter(),
    postings.Filter(public_only=True),
    postings.Filter(start=WHEN + timedelta(minutes=2)),
    postings.Filter(public_only=True, end=WHEN + timedelta(days=4)),
]
QUERIES = ["router", "refund for the double charge", "printer scanner", "nothing known here"]


@pytest.fixture(autouse=True)
def _nothing_kept():
    postings.kept_clear()
    kept_vectors.kept_clear()
    yield
    postings.kept_clear()
    kept_vectors.kept_clear()


@pytest.fixture
def fake(settings):
    return use_fake(settings)


def _history(actors):
    """Two conversations, internal notes, two messages outside any ticket and another customer's conversation, all
    embedded with their sentences."""
    messages = conversation(actors, "one", TURNS)
    messages += conversation(actors, "two", [("Dana", "Refund please. Soon."), ("Sam", "Done."), ("Dana", "Wifi ok?")])
    messages += conversation(actors, "internal", TURNS[:3], start=WHEN + timedelta(days=3), public=False)
    loose = [
        message_ingest(
            customer=actors.customer,
            body=body,
            author_role="customer",
            author_name="Dana",
            created_at=WHEN + timedelta(days=5, minutes=minutes),
            announce=False,
        )[0]
        for minutes, body in enumerate(["A printer refund, outside any ticket. Is it due?", "And a router?"])
    ]
    other = conversation(actors, "other", TURNS[:2], customer=actors.other_customer)
    message_embeddings_compute(message_ids=[m.pk for m in [*messages, *loose, *other]])
    return [*messages, *loose]


def _statement_features(customer, fake, query, rows_filter, *, unnamed=None, limit=100, wanted=()):
    return selectors._vector_features(
        scope=_message_scope(customer, rows_filter),
        model=fake.name,
        vector=fake.embed([query])[0],
        limit=limit,
        wanted=list(wanted),
        vector_sql="",
        distance="",
        unnamed_vector=unnamed,
    )


def _kept_features(customer, fake, query, rows_filter, *, unnamed=None):
    vectors = kept_vectors.checked(customer.pk, fake.name)
    assert vectors is not None
    return vectors.features(
        vector=fake.embed([query])[0],
        unnamed=unnamed,
        sentence_target=unnamed or fake.embed([query])[0],
        neighbour_weight=selectors.VECTOR_NEIGHBOUR_WEIGHT,
        rows_filter=rows_filter,
    )


def _assert_rows_equal(kept, statement):
    assert [row[0] for row in kept] == [row[0] for row in statement]
    for mine, theirs in zip(kept, statement, strict=True):
        for value, other in zip(mine[1:], theirs[1:], strict=True):
            assert (value is None) == (other is None)
            if value is not None:
                assert value == pytest.approx(other, abs=1e-6)


def _assert_same(customer, fake):
    with connection.cursor() as cursor:  # a search checks the vectors by the fingerprint read with the words
        cursor.execute(kept_vectors._FINGERPRINT_SQL, [customer.pk] * 3)
        assert postings.checked(customer.pk, "router").fingerprint == tuple(cursor.fetchone())
    for rows_filter in FILTERS:
        for query in QUERIES:
            unnamed = fake.embed(["refund"])[0] if query == "router" else None
            features = _kept_features(customer, fake, query, rows_filter, unnamed=unnamed)
            statement = _statement_features(customer, fake, query, rows_filter, unnamed=unnamed)
            _assert_rows_equal(features.rows(100, []), statement)
            # The nearest two, then a wanted row further down, as the statement returns them.
            further = [statement[-1][0]] if len(statement) > 2 else []
            limited = _statement_features(customer, fake, query, rows_filter, unnamed=unnamed, limit=2, wanted=further)
            _assert_rows_equal(features.rows(2, further), limited)
            ids = [row[0] for row in statement]
            target = unnamed or fake.embed([query])[0]
            scope = _message_scope(customer, rows_filter)
            sentences = selectors._sentence_similarities(scope=scope, ids=ids, model=fake.name, target=target)
            kept_sentences = features.sentences(ids)
            assert kept_sentences.keys() == sentences.keys()
            assert sentences  # the messages of two or more sentences have some
            for pk, sim in sentences.items():
                assert kept_sentences[pk] == pytest.approx(sim, abs=1e-6)


def _message_scope(customer, rows_filter):
    """``message_search``'s scope (the statements' form: nothing kept in the process)."""
    scope = _scope(customer, rows_filter)
    scope.smoothed_vector_sql = selectors._MESSAGE_SMOOTHED_VECTOR_SQL
    scope.vector_features_sql = selectors._MESSAGE_VECTOR_FEATURES_SQL
    scope.sentences_sql = selectors._MESSAGE_SENTENCES_SQL
    return scope


def _reads(monkeypatch):
    counts = {"reads": 0}
    read = kept_vectors.Vectors.read.__func__

    def counting(cls, customer_id, model):
        counts["reads"] += 1
        return read(cls, customer_id, model)

    monkeypatch.setattr(kept_vectors.Vectors, "read", classmethod(counting))
    return counts


def test_features_and_sentences_are_the_statements_with_neighbours_and_filters(actors, fake):
    _history(actors)
    assert SentenceEmbedding.objects.filter(message__customer=actors.customer).exists()
    _assert_same(actors.customer, fake)


def test_kept_vectors_follow_every_change_of_the_messages(actors, fake, monkeypatch):
    messages = _history(actors)
    reads = _reads(monkeypatch)
    _assert_same(actors.customer, fake)
    assert reads["reads"] == 1  # read once, then checked by the fingerprint
    new, _ = message_ingest(  # a new message, not yet embedded: its message row alone changes the fingerprint
        customer=actors.customer,
        ticket=messages[0].ticket,
        body="The printer jams again. Please call.",
        author_role="customer",
        author_name="Dana",
        created_at=WHEN + timedelta(minutes=30),
        announce=False,
    )
    _assert_same(actors.customer, fake)
    message_embeddings_compute(message_ids=[new.pk])  # then embedded, with its sentences
    _assert_same(actors.customer, fake)
    TicketMessage.objects.filter(pk=messages[1].pk).update(is_public=False)  # edited
    _assert_same(actors.customer, fake)
    MessageEmbedding.objects.filter(pk=messages[2].pk).update(embedding=fake.embed(["printer"])[0])  # re-embedded
    _assert_same(actors.customer, fake)
    TicketMessage.objects.filter(pk=messages[3].pk).delete()
    _assert_same(actors.customer, fake)
    duplicate = Customer.objects.create(organization=actors.org, name="Dana W. (duplicate)")
    moved = conversation(actors, "moved", [("Dana", "The scanner jams. Help."), ("Sam", "Noted.")], customer=duplicate)
    message_embeddings_compute(message_ids=[m.pk for m in moved])
    customer_merge(source=duplicate, into=actors.customer, user=None, via="api")
    _assert_same(actors.customer, fake)
    assert reads["reads"] == 7  # once more after each change, never between


def test_facts_from_the_kept_words_are_the_statements(actors):
    messages = _history(actors)
    rows = postings.checked(actors.customer.pk, "router").rows
    assert rows is not None
    ids = [m.pk for m in messages]
    kept = postings.facts(rows, ids)
    with connection.cursor() as cursor:
        cursor.execute(selectors._MESSAGE_FACTS_SQL, [ids])
        statement = {row[0]: row[1:] for row in cursor.fetchall()}
    assert kept == statement
    assert len({facts[2] for facts in kept.values()}) < len(kept)  # two texts differ only in case and spaces
    asks = [pk for pk, facts in kept.items() if facts[4]]
    assert len(asks) >= 2  # a question with trailing spaces counts
    assert selectors._facts(selectors._MESSAGE_FACTS_SQL, ids, kept=rows) == selectors._facts(
        selectors._MESSAGE_FACTS_SQL, ids
    )


def test_facts_are_read_by_the_statement_when_another_customers_message_shares_a_ticket(actors):
    messages = _history(actors)
    message_ingest(  # the application never writes this; the facts' next turn would then differ
        customer=actors.other_customer,
        ticket=messages[0].ticket,
        body="Someone else's turn",
        author_role="customer",
        author_name="Lee",
        created_at=WHEN + timedelta(seconds=30),
        announce=False,
    )
    TicketMessage.objects.filter(body="Someone else's turn").update(customer=actors.other_customer)
    rows = postings.checked(actors.customer.pk, "router").rows
    assert rows is not None and rows.shared_tickets
    ids = [m.pk for m in messages]
    assert postings.facts(rows, ids) == {}
    assert selectors._facts(selectors._MESSAGE_FACTS_SQL, ids, kept=rows) == selectors._facts(
        selectors._MESSAGE_FACTS_SQL, ids
    )


def test_message_search_pages_are_the_same_either_way(actors, fake, monkeypatch):
    _history(actors)
    queries = ["router outage refund", "What did Dana say about the printer?", "double charge", "the and of", "xyz"]
    for query in queries:
        for include_internal in (True, False):
            pages = []
            for kept in (True, False):
                monkeypatch.setattr(selectors, "VECTORS_IN_PROCESS", kept)
                monkeypatch.setattr(selectors, "POSTINGS_IN_PROCESS", kept)
                found = selectors.message_search(
                    customer=actors.customer, query=query, page_size=5, include_internal=include_internal
                )
                pages.append([m.pk for m in found.results])
            assert pages[0] == pages[1], query


def test_erasing_a_customer_forgets_their_vectors_in_this_process(actors, fake, django_capture_on_commit_callbacks):
    _history(actors)
    customer_id = actors.customer.pk
    selectors.message_search(customer=actors.customer, query="router outage", page_size=5)
    assert kept_vectors._kept.get((customer_id, hash(fake.name))) is not None
    with django_capture_on_commit_callbacks(execute=True):
        customer_erase(customer=actors.customer)
    assert kept_vectors._kept.get((customer_id, hash(fake.name))) is None
    assert kept_vectors.checked(customer_id, fake.name) is None


def test_a_customer_without_vectors_is_searched_by_the_statements(actors, fake):
    conversation(actors, "one", TURNS)  # not embedded
    vectors = kept_vectors.checked(actors.customer.pk, fake.name)
    assert vectors is not None and not len(vectors.ids)
    features = _kept_features(actors.customer, fake, "router", postings.Filter())
    assert features.rows(10, []) == [] and features.sentences([1, 2]) == {}
    found = selectors.message_search(customer=actors.customer, query="router", page_size=5)
    assert found.results  # by their words alone


def test_a_customer_with_more_than_a_process_keeps_is_searched_by_the_statements(actors, fake, monkeypatch):
    _history(actors)
    reads = _reads(monkeypatch)
    statement_pages = _pages(actors, monkeypatch, kept=False)
    monkeypatch.setattr(postings, "KEPT_ROWS", 3)  # more messages than a process keeps: neither words nor vectors read
    assert _pages(actors, monkeypatch, kept=True) == statement_pages
    assert reads["reads"] == 0 and postings._kept.get((actors.customer.pk,)) is None
    monkeypatch.setattr(postings, "KEPT_ROWS", 1000)
    # The words fit; the message vectors alone (14 x 1,536 bytes) would too, but with their sentences' they do not:
    # read once, then left to the statements.
    monkeypatch.setattr(kept_vectors, "KEPT_BYTES", 25_000)
    assert _pages(actors, monkeypatch, kept=True) == statement_pages
    assert reads["reads"] == 1 and kept_vectors._too_large
    assert _pages(actors, monkeypatch, kept=True) == statement_pages
    assert reads["reads"] == 1


def _pages(actors, monkeypatch, *, kept):
    monkeypatch.setattr(selectors, "VECTORS_IN_PROCESS", kept)
    monkeypatch.setattr(selectors, "POSTINGS_IN_PROCESS", kept)
    queries = ["router outage refund", "What did Dana say about the printer?", "double charge"]
    return [
        [m.pk for m in selectors.message_search(customer=actors.customer, query=q, page_size=5).results]
        for q in queries
    ]


def test_dates_without_a_zone_are_read_in_the_current_one(actors, fake, monkeypatch):
    _history(actors)
    aware = {"start": WHEN + timedelta(minutes=2), "end": WHEN + timedelta(days=4)}
    naive = {key: value.replace(tzinfo=None) for key, value in aware.items()}  # UTC is the current time zone
    for kept in (True, False):
        monkeypatch.setattr(selectors, "VECTORS_IN_PROCESS", kept)
        monkeypatch.setattr(selectors, "POSTINGS_IN_PROCESS", kept)
        found = selectors.message_search(customer=actors.customer, query="router refund", **naive)
        expected = selectors.message_search(customer=actors.customer, query="router refund", **aware)
        assert [m.pk for m in found.results] == [m.pk for m in expected.results]
        assert found.results
