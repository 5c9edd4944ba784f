"""Recall search over messages: embedded after commit, hybrid-ranked, scoped to one customer, date-filtered."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from memory.models import MessageEmbedding
from memory.selectors import message_search
from tests.memory.fake_embedder import use_fake
from tickets.services import message_ingest


def _ingest(customer, body, **kwargs):
    message, _ = message_ingest(
        customer=customer, body=body, author_role="customer", author_name="Dana", trigger_agent=False, **kwargs
    )
    return message


def test_new_messages_are_embedded_after_commit_with_their_model(actors, settings, django_capture_on_commit_callbacks):
    fake = use_fake(settings)
    with django_capture_on_commit_callbacks(execute=True):
        message = _ingest(actors.customer, "My modem blinks red")
    row = MessageEmbedding.objects.get(message=message)
    assert row.model == fake.name
    assert row.customer_id == actors.customer.pk and row.organization_id == actors.org.pk
    assert row.text == "Dana: My modem blinks red"


def test_hybrid_message_search_finds_by_meaning_and_by_words(actors, settings, django_capture_on_commit_callbacks):
    use_fake(settings)
    with django_capture_on_commit_callbacks(execute=True):
        by_meaning = _ingest(actors.customer, "The wifi box keeps restarting")
        by_words = _ingest(actors.customer, "Ticket reference QX-4471 about the outage")
        for i in range(15):
            _ingest(actors.customer, f"Thanks for the update number {i}")
    found = message_search(customer=actors.customer, query="router outage", page_size=2).results
    assert {m.pk for m in found} == {by_meaning.pk, by_words.pk}


def test_message_search_is_scoped_to_the_customer(actors, settings, django_capture_on_commit_callbacks):
    use_fake(settings)
    with django_capture_on_commit_callbacks(execute=True):
        _ingest(actors.other_customer, "My router is broken, refund me")
        _ingest(actors.stranger, "My router is broken, refund me")
        own = _ingest(actors.customer, "Printer offline")
    for query in ("router refund", "printer", "charged twice"):
        results = message_search(customer=actors.customer, query=query, page_size=100).results
        assert {m.customer_id for m in results} == {actors.customer.pk}
    assert message_search(customer=actors.customer, query="scanner").results[0].pk == own.pk


def test_message_search_date_filter_and_unembedded_fallback(actors, settings):
    use_fake(settings)
    # No on-commit callbacks: nothing is embedded, full text alone must answer.
    old = _ingest(actors.customer, "router firmware question", created_at=timezone.now() - timedelta(days=40))
    new = _ingest(actors.customer, "router reboot question")
    recent = message_search(customer=actors.customer, query="router", start=timezone.now() - timedelta(days=7))
    assert [m.pk for m in recent.results] == [new.pk]
    older = message_search(customer=actors.customer, query="router", end=timezone.now() - timedelta(days=7))
    assert [m.pk for m in older.results] == [old.pk]


def test_empty_query_pages_newest_first(actors, settings):
    use_fake(settings)
    page = message_search(customer=actors.customer, query="", page_size=2)
    assert [m.body[:10] for m in page.results] == ["I was char", "Please upd"]
    assert page.total == 3 and page.has_next
