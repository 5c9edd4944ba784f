"""One customer's vector features read on a second connection while the caller's ranks by full text
(``SUPPORTMEM_SEARCH_CONCURRENT_READS``, on by default): the same pages, scores included, as reading them one after the
other."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import DatabaseError, connection, transaction

from memory import selectors
from memory.embeddings import message_embeddings_compute, query_cache_clear
from memory.services import Provenance, passage_insert
from tests.conftest import build_actors
from tests.memory.fake_embedder import use_fake
from tickets.models import TicketMessage
from tickets.services import TicketChanges, message_ingest, ticket_upsert

WHEN = datetime(2025, 3, 12, 9, 0, tzinfo=UTC)
CHATS = [
    ["My router drops the wifi every evening.", "Which modem model is it?", "A Fritz box, bought last week."],
    ["I was billed twice for March.", "Sorry, a refund of the duplicate charge is on its way.", "Thanks!"],
    ["The printer is offline again.", "Did you restart the scanner too?", "Yes, yesterday. No change."],
]
QUERIES = [
    "router wifi",
    "When was I billed twice?",
    "printer scanner offline",
    "refund",
    "Fritz box model",
    "What did Dana say about the scanner?",
]


def _history(actors):
    messages = []
    for number, chat in enumerate(CHATS):
        ticket = ticket_upsert(
            organization=actors.org,
            customer=actors.customer,
            integration_id=None,
            external_id=f"concurrent-{number}",
            changes=TicketChanges(subject=f"chat {number}", channel="chat"),
            created_at=WHEN,
            source_updated_at=WHEN,
        )
        for index, body in enumerate(chat):
            message, _ = message_ingest(
                customer=actors.customer,
                ticket=ticket,
                body=body,
                author_role="customer" if index % 2 == 0 else "staff",
                author_name="Dana" if index % 2 == 0 else "Sam",
                created_at=WHEN + timedelta(days=number, minutes=index),
                announce=False,
            )
            messages.append(message)
            passage_insert(
                organization=actors.org,
                customer=actors.customer,
                text=body,
                provenance=Provenance(reason="test"),
            )
    message_embeddings_compute(message_ids=[m.pk for m in TicketMessage.objects.filter(customer=actors.customer)])
    return messages


def _pages(actors, page_size=25):
    pages = []
    for query in QUERIES:
        query_cache_clear()
        found = selectors.message_search(customer=actors.customer, query=query, page_size=page_size)
        pages.append([(row.pk, row.score) for row in found.results])
        query_cache_clear()
        found = selectors.passage_search(
            organization=actors.org, customer=actors.customer, query=query, page_size=page_size
        )
        pages.append([(row.pk, row.score) for row in found.results])
    return pages


@pytest.fixture
def spied(monkeypatch, settings):
    """Counts the reads handed to a worker thread (the second connection turned on)."""
    settings.SUPPORTMEM_SEARCH_CONCURRENT_READS = True
    calls = []
    submit = selectors._worker_submit

    def counting(function, /, **kwargs):
        calls.append(function.__name__)
        return submit(function, **kwargs)

    monkeypatch.setattr(selectors, "_worker_submit", counting)
    return calls


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("vectors_kept", [True, False])
def test_vector_features_on_a_second_connection_give_the_same_pages(settings, monkeypatch, spied, vectors_kept):
    use_fake(settings)
    monkeypatch.setattr(selectors, "VECTORS_IN_PROCESS", vectors_kept)
    actors = build_actors()
    _history(actors)
    monkeypatch.setattr(selectors, "CONCURRENT_READS", False)
    serial = _pages(actors)
    assert not spied
    monkeypatch.setattr(selectors, "CONCURRENT_READS", True)
    concurrent = _pages(actors)
    # messages and passages: the vector features, then the candidates' best sentences (docs/recall.md, step 7); the
    # messages' vectors, when kept in the process, are compared on the caller's thread (no second connection)
    if vectors_kept:
        assert spied == ["_every_vector_feature", "_sentence_similarities"] * len(QUERIES)
    else:
        assert spied == ["_every_vector_feature", "_sentence_similarities"] * 2 * len(QUERIES)
    assert concurrent == serial
    assert any(len(page) > 3 for page in serial)
    assert selectors._worker_connections  # a worker thread's own connection ...
    selectors.search_workers_close()
    assert not selectors._worker_connections  # ... closed with the threads
    assert _pages(actors) == serial  # and made again


def _organization_pages(actors):
    pages = []
    for query in QUERIES:
        query_cache_clear()
        found = selectors.passage_search(organization=actors.org, customer=None, query=query, page_size=25)
        pages.append([(row.pk, row.score) for row in found.results])
    return pages


@pytest.mark.django_db(transaction=True)
def test_organisation_wide_the_nearest_rows_are_read_on_a_second_connection(settings, monkeypatch, spied):
    use_fake(settings)
    actors = build_actors()
    _history(actors)
    passage_insert(
        organization=actors.org,
        customer=actors.other_customer,
        text="Another customer's router keeps rebooting.",
        provenance=Provenance(reason="test"),
    )
    monkeypatch.setattr(selectors, "CONCURRENT_READS", False)
    serial = _organization_pages(actors)
    assert not spied
    monkeypatch.setattr(selectors, "CONCURRENT_READS", True)
    assert _organization_pages(actors) == serial
    assert spied.count("_nearest_when_embedded") == len(QUERIES)
    assert any(len(page) > 3 for page in serial)

    def broken(**kwargs):
        raise DatabaseError("too many connections")

    monkeypatch.setattr(selectors, "_nearest_when_embedded", broken)
    assert _organization_pages(actors) == serial  # read again on the caller's connection


@pytest.mark.django_db(transaction=True)
def test_a_cut_read_or_a_failed_connection_falls_back_to_the_callers(settings, monkeypatch, spied):
    use_fake(settings)
    monkeypatch.setattr(selectors, "VECTORS_IN_PROCESS", False)  # the statements' path (the kept vectors cut nothing)
    actors = build_actors()
    _history(actors)
    # Two candidates from each ranking: the second connection's three nearest rows miss some text candidates.
    monkeypatch.setattr(selectors, "CANDIDATE_MARGIN", 0)
    monkeypatch.setattr(selectors, "LEARNED_CANDIDATES", 1)
    monkeypatch.setattr(selectors, "CONCURRENT_VECTOR_ROWS", 3)
    monkeypatch.setattr(selectors, "CONCURRENT_READS", False)
    serial = _pages(actors, page_size=2)
    monkeypatch.setattr(selectors, "CONCURRENT_READS", True)
    reads = []
    features = selectors._vector_features

    def recorded(**kwargs):
        reads.append((kwargs["limit"], kwargs["wanted"]))
        return features(**kwargs)

    monkeypatch.setattr(selectors, "_vector_features", recorded)
    assert _pages(actors, page_size=2) == serial
    assert spied
    assert (3, []) in reads  # the cut read on the second connection ...
    assert any(limit == 2 and wanted for limit, wanted in reads)  # ... and, past it, the read with the wanted rows
    monkeypatch.setattr(selectors, "CONCURRENT_READS", False)
    serial = _pages(actors)
    monkeypatch.setattr(selectors, "CONCURRENT_READS", True)

    def broken(**kwargs):
        raise DatabaseError("too many connections")

    monkeypatch.setattr(selectors, "_every_vector_feature", broken)
    assert _pages(actors) == serial


@pytest.mark.django_db(transaction=True)
def test_inside_a_transaction_every_read_stays_on_the_callers_connection(settings, spied):
    """A second connection would not see what the transaction wrote and has not committed."""
    use_fake(settings)
    actors = build_actors()
    with transaction.atomic():
        messages = _history(actors)
        assert connection.in_atomic_block
        found = selectors.message_search(customer=actors.customer, query="router wifi", page_size=25)
    assert not spied
    assert messages[0].pk in [row.pk for row in found.results]


def test_in_a_test_transaction_no_worker_is_used(actors, settings, spied):
    use_fake(settings)
    _history(actors)
    assert selectors.message_search(customer=actors.customer, query="router wifi").results
    assert not spied


@pytest.mark.django_db(transaction=True)
def test_the_setting_keeps_every_read_on_the_callers_connection(settings, spied):
    use_fake(settings)
    settings.SUPPORTMEM_SEARCH_CONCURRENT_READS = False
    actors = build_actors()
    _history(actors)
    assert selectors.message_search(customer=actors.customer, query="router wifi").results
    assert not spied


def test_the_second_connection_is_on_by_default():
    from django.conf import settings

    assert settings.SUPPORTMEM_SEARCH_CONCURRENT_READS is True


def test_kept_words_are_scored_on_another_thread_while_this_one_runs_the_model(settings, monkeypatch):
    """``_embedded_beside``: the query's vector is done when it returns, the Python work ran on a thread of its own;
    with every such thread taken by other searches, both run here one after the other."""
    import threading

    fake = use_fake(settings)
    query_cache_clear()
    caller = threading.current_thread()
    pending, ran_on = selectors._embedded_beside("refund for a double charge", threading.current_thread)
    assert pending is not None and pending[1].done()
    assert pending[1].result() == fake.embed(["refund for a double charge"])[0]
    assert ran_on is not caller
    assert selectors._beside_busy == 0  # the thread is given back

    monkeypatch.setattr(selectors, "_beside_busy", selectors.CONCURRENT_WORKERS)  # all taken
    pending, ran_on = selectors._embedded_beside("printer offline", threading.current_thread)
    assert ran_on is caller and pending is not None and pending[1].done()
    assert selectors._beside_busy == selectors.CONCURRENT_WORKERS
