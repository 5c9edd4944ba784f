"""One customer's message words kept in the process (memory/postings.py): the statement's scores, never stale.

Every test compares the in-process BM25 with ``selectors._MESSAGE_HITS_SQL`` (the statement it stands in for) on real
PostgreSQL, after the customer's messages change in each way they can: new, edited, deleted, moved by a merge.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from memory import postings, selectors
from support_agent.merge import customer_merge
from support_agent.privacy import customer_erase
from tests.memory.test_search_statements import WHEN
from tests.memory.test_search_statements import _conversation as conversation
from tickets.models import Customer, TicketMessage
from tickets.services import message_ingest

TURNS = [
    ("Dana", "My router drops the wifi every evening, the router light blinks."),
    ("Sam", "Which router model is it? Dana, is it the Fritz box?"),
    ("Dana", "A Fritz box. Router router router."),
    ("Sam", "Thanks, I will send a refund for the outage."),
    ("Dana", "Great, the refund for the router outage is welcome."),
]
EVERY_ROW = postings.Filter()
QUERIES = [
    "router outage refund",
    "What did Dana say about the router?",
    "Fritz box model",
    "Sam refund",
    "the and of",
    "scanner",
]


@pytest.fixture(autouse=True)
def _nothing_kept():
    postings.kept_clear()
    yield
    postings.kept_clear()


def _conversation(actors, name, turns=TURNS, **kwargs):
    return conversation(actors, name, turns, **kwargs)


def _scope(customer, rows_filter=EVERY_ROW):
    scope = selectors._Scope(table="tickets_ticketmessage m", customer_id=customer.pk)
    scope.add("m.customer_id = %s", customer.pk)
    if rows_filter.public_only:
        scope.add("m.is_public")
    if rows_filter.start:
        scope.add("m.created_at >= %s", rows_filter.start)
    if rows_filter.end:
        scope.add("m.created_at <= %s", rows_filter.end)
    scope.postings = rows_filter
    return scope


def _both(monkeypatch, customer, query, rows_filter=EVERY_ROW):
    """(in process, statement) scores of one search."""
    scope = _scope(customer, rows_filter)
    monkeypatch.setattr(selectors, "POSTINGS_IN_PROCESS", True)
    kept = selectors._text_scores(scope=scope, query=query, limit=50, hits_sql=selectors._MESSAGE_HITS_SQL)
    monkeypatch.setattr(selectors, "POSTINGS_IN_PROCESS", False)
    statement = selectors._text_scores(scope=scope, query=query, limit=50, hits_sql=selectors._MESSAGE_HITS_SQL)
    return kept, statement


def _assert_same(monkeypatch, customer, rows_filter=EVERY_ROW):
    found_any = False
    for query in QUERIES:
        kept, statement = _both(monkeypatch, customer, query, rows_filter)
        assert sorted(pk for pk, _ in kept) == sorted(pk for pk, _ in statement), query
        by_id = dict(statement)
        for pk, score in kept:
            assert score == pytest.approx(by_id[pk], rel=1e-12), query
        # Equal scores may differ in their last bit between the two sums; the order is the same otherwise.
        assert [pk for pk, _ in kept] == [pk for pk, _ in statement] or _ties_only(kept, statement), query
        found_any = found_any or len(kept) > 3
    assert found_any  # neighbours and authors match too


def _ties_only(first, second):
    return all(a == b or abs(score - other) < 1e-12 for (a, score), (b, other) in zip(first, second, strict=True))


def _reads(monkeypatch):
    """Counts of the customer's rows read whole and read from above the kept ones."""
    counts = {"whole": 0, "newer": 0}
    extended = postings.Rows.extended

    def counting(self, customer_id):
        counts["newer" if self.ids else "whole"] += 1
        return extended(self, customer_id)

    monkeypatch.setattr(postings.Rows, "extended", counting)
    return counts


def test_scores_are_the_statements_with_neighbours_authors_and_filters(actors, monkeypatch):
    _conversation(actors, "one")
    _conversation(actors, "two", [("Dana", "Refund please"), ("Sam", "Done."), ("Dana", "The wifi works again")])
    _conversation(actors, "internal", TURNS[:3], start=WHEN + timedelta(days=3), public=False)
    message_ingest(  # outside any conversation: its neighbours are the other messages outside one
        customer=actors.customer,
        body="A router scanner refund",
        author_role="customer",
        author_name="Dana",
        created_at=WHEN + timedelta(days=5),
        announce=False,
    )
    _conversation(actors, "other", customer=actors.other_customer)
    _assert_same(monkeypatch, actors.customer)
    _assert_same(monkeypatch, actors.customer, postings.Filter(public_only=True))
    _assert_same(monkeypatch, actors.customer, postings.Filter(start=WHEN + timedelta(minutes=2)))
    _assert_same(monkeypatch, actors.customer, postings.Filter(public_only=True, end=WHEN + timedelta(days=4)))
    assert _both(monkeypatch, actors.customer, "router", postings.Filter(start=WHEN + timedelta(days=30))) == ([], [])
    other = {m.pk for m in TicketMessage.objects.filter(customer=actors.other_customer)}
    for query in QUERIES:
        kept, _ = _both(monkeypatch, actors.customer, query)
        assert not other & {pk for pk, _ in kept}


def test_a_second_search_reads_no_row_and_a_new_message_reads_only_itself(actors, monkeypatch):
    first = _conversation(actors, "one")
    reads = _reads(monkeypatch)
    _assert_same(monkeypatch, actors.customer)
    assert reads == {"whole": 1, "newer": 0}
    message, _ = message_ingest(
        customer=actors.customer,
        ticket=first[0].ticket,
        body="The router outage is back, refund again",
        author_role="customer",
        author_name="Dana",
        created_at=WHEN + timedelta(minutes=2, seconds=30),
        announce=False,
    )  # between two turns: the turns around it are its neighbours now
    kept, _ = _both(monkeypatch, actors.customer, "router outage refund")
    assert message.pk in {pk for pk, _ in kept}
    assert reads == {"whole": 1, "newer": 1}
    _assert_same(monkeypatch, actors.customer)
    assert reads == {"whole": 1, "newer": 1}


@pytest.mark.parametrize("change", ["edit", "delete", "merge away", "merge in", "erase"])
def test_every_change_to_the_customers_messages_is_seen(actors, monkeypatch, change):
    messages = _conversation(actors, "one")
    _assert_same(monkeypatch, actors.customer)
    if change == "edit":
        TicketMessage.objects.filter(pk=messages[0].pk).update(body="Scanner jam, nothing about networking")
    elif change == "delete":
        TicketMessage.objects.filter(pk=messages[2].pk).delete()
    elif change == "merge in":
        duplicate = Customer.objects.create(organization=actors.org, name="Dana (duplicate)")
        _conversation(actors, "moved", [("Dana", "The scanner and the router both fail")], customer=duplicate)
        customer_merge(source=duplicate, into=actors.customer, user=None, via="api")
    elif change == "merge away":
        customer_merge(source=actors.customer, into=actors.other_customer, user=None, via="api")
    else:
        customer_erase(customer=actors.customer)
    current = Customer.objects.filter(pk=actors.customer.pk).first()
    for customer in [c for c in (current, actors.other_customer) if c is not None]:
        if TicketMessage.objects.filter(customer=customer).exists():
            _assert_same(monkeypatch, customer)
        for query in QUERIES:
            kept, statement = _both(monkeypatch, customer, query)
            assert {pk for pk, _ in kept} == {pk for pk, _ in statement}
    if change in ("merge away", "erase"):
        kept, _ = _both(monkeypatch, actors.customer, "router outage refund")
        assert kept == []  # nothing of theirs is left to find


def test_the_least_recently_searched_customers_go_first(actors, monkeypatch):
    _conversation(actors, "one")
    _conversation(actors, "other", customer=actors.other_customer)
    sizes = [TicketMessage.objects.filter(customer=c).count() for c in (actors.customer, actors.other_customer)]
    monkeypatch.setattr(postings, "KEPT_ROWS", max(sizes))  # either customer's rows fit, not both
    reads = _reads(monkeypatch)
    _both(monkeypatch, actors.customer, "router")
    _both(monkeypatch, actors.other_customer, "router")  # the first customer's rows make room for these
    _both(monkeypatch, actors.customer, "router")
    assert reads == {"whole": 3, "newer": 0}
    monkeypatch.setattr(postings, "KEPT_ROWS", 2)  # more rows than may be kept: never read, the statement scores them
    kept, statement = _both(monkeypatch, actors.customer, "router")
    assert kept == statement and kept
    assert reads == {"whole": 3, "newer": 0}
    assert postings._kept.get((actors.customer.pk,)) is None


def test_message_search_pages_are_the_same_either_way(actors, monkeypatch):
    _conversation(actors, "one")
    _conversation(actors, "two", [("Dana", "Refund please"), ("Sam", "Done."), ("Dana", "The wifi works again")])
    for query in QUERIES:
        pages = []
        for kept in (True, False):
            monkeypatch.setattr(selectors, "POSTINGS_IN_PROCESS", kept)
            found = selectors.message_search(customer=actors.customer, query=query, page_size=5)
            pages.append([m.pk for m in found.results])
        assert pages[0] == pages[1], query


def test_erasing_a_customer_forgets_their_words_in_this_process(actors, django_capture_on_commit_callbacks):
    _conversation(actors, "one")
    customer_id = actors.customer.pk
    selectors.message_search(customer=actors.customer, query="router outage", page_size=5)
    assert postings._kept.get((customer_id,)) is not None
    assert any("router" in text for text in selectors._MEASURES)
    with django_capture_on_commit_callbacks(execute=True):
        customer_erase(customer=actors.customer)
    assert postings._kept.get((customer_id,)) is None
    assert not any("router" in text for text in selectors._MEASURES)


def test_a_customer_not_searched_for_a_while_is_dropped(actors, monkeypatch):
    _conversation(actors, "one")
    _both(monkeypatch, actors.customer, "router")
    assert postings._kept.get((actors.customer.pk,)) is not None
    monkeypatch.setattr(postings, "KEPT_SECONDS", 0.0)
    assert postings._kept.get((actors.customer.pk,)) is None
