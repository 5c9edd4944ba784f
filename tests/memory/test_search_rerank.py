"""After fusion: a named date is preferred, a conversation's hits support each other, duplicates show once.

These test the RRF re-scoring path (``LEARNED_RANKING = False``); the learned ranking that replaced it by default
is tested in test_search_learned.py.

Also the query side of search: the query is embedded once (cached) and off the request thread, and
organisation-wide full text stays bounded.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from memory import selectors
from memory.embeddings import query_embed
from memory.selectors import _message_rerank, message_search, passage_search
from memory.services import Provenance, passage_insert
from tests.memory.fake_embedder import use_fake
from tickets.services import message_ingest


@pytest.fixture
def fake(settings):
    return use_fake(settings)


def _say(actors, body, *, ticket=None, when=None):
    message, _ = message_ingest(
        customer=actors.customer,
        ticket=ticket or actors.open_ticket,
        body=body,
        author_role="customer",
        author_name="Dana",
        created_at=when,
        announce=False,
    )
    return message


def test_a_date_named_in_the_query_prefers_messages_of_that_period(actors, fake, monkeypatch):
    march = _say(actors, "The scanner jammed on the blue forms.", when=datetime(2025, 3, 12, tzinfo=UTC))
    june = _say(
        actors, "The scanner jammed again, the scanner jams on every form.", when=datetime(2025, 6, 2, tzinfo=UTC)
    )

    def first(query):
        return message_search(customer=actors.customer, query=query).results[0].pk

    monkeypatch.setattr(selectors, "LEARNED_RANKING", False)
    assert first("scanner jammed") == june.pk  # more of the words: first without a date
    assert first("scanner jammed in March 2025") == march.pk
    assert first("What jammed on 12 March, 2025?") == march.pk
    monkeypatch.setattr(selectors, "DATE_BOOST", 0.0)
    assert first("scanner jammed in March 2025") == june.pk  # the boost, not the words, moved it


def test_a_conversations_hits_support_each_other(actors, fake, monkeypatch):
    alone = _say(actors, "printer offline", ticket=actors.solved_ticket)
    together = _say(actors, "printer offline again", ticket=actors.open_ticket)
    mate = _say(actors, "still no printing", ticket=actors.open_ticket)
    ranked = [(alone.pk, 0.50), (together.pk, 0.48), (mate.pk, 0.20)]
    monkeypatch.setattr(selectors, "DATE_BOOST", 0.0)
    monkeypatch.setattr(selectors, "SESSION_WEIGHT", 0.2)
    reranked = _message_rerank(list(ranked), query="printer offline")
    assert [pk for pk, _ in reranked] == [together.pk, alone.pk, mate.pk]
    assert dict(reranked)[together.pk] == pytest.approx(0.48 + 0.2 * 0.20)
    assert dict(reranked)[alone.pk] == pytest.approx(0.50)  # nothing else from its ticket
    monkeypatch.setattr(selectors, "SESSION_WEIGHT", 0.0)
    assert _message_rerank(list(ranked), query="printer offline") == ranked


def test_identical_messages_are_shown_once(actors, fake):
    first = _say(actors, "Thanks for contacting Acme support!", ticket=actors.solved_ticket)
    second = _say(actors, "  thanks for contacting acme support!", ticket=actors.open_ticket)
    page = message_search(customer=actors.customer, query="contacting acme support", page_size=10)
    found = [m.pk for m in page.results]
    assert len({first.pk, second.pk} & set(found)) == 1
    assert page.total == len(found)


def test_a_query_is_embedded_once_on_the_request_thread_while_its_words_are_scored_beside_it(actors, fake, monkeypatch):
    """The customer's words are kept: they are scored on a "search-beside" thread while the request's own thread runs
    the model (the model's run releases the GIL; the scoring would hold it)."""
    import threading

    threads = []
    scored_on = []
    original = fake.embed
    original_scores = selectors._text_scores

    def embed(texts):
        threads.append(threading.current_thread().name)
        return original(texts)

    def text_scores(**kwargs):
        scored_on.append(threading.current_thread().name)
        return original_scores(**kwargs)

    monkeypatch.setattr(fake, "embed", embed)
    monkeypatch.setattr(selectors, "_text_scores", text_scores)
    for _ in range(3):  # the agent pages and repeats itself
        message_search(customer=actors.customer, query="firmware reboot")
    assert threads == [threading.current_thread().name]  # once: the repeats find it cached
    assert len(scored_on) == 3 and all(name.startswith("search-beside") for name in scored_on)
    assert query_embed("firmware reboot") == original(["firmware reboot"])[0]


def test_organisation_wide_full_text_ranks_a_bounded_window_and_still_fills_the_page(
    actors, fake, monkeypatch, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):  # embedded, as after any commit
        for i in range(30):
            passage_insert(
                organization=actors.org,
                customer=actors.customer if i % 2 else actors.other_customer,
                text=f"router reset step {i}",
                provenance=Provenance(reason="test"),
            )
    monkeypatch.setattr(selectors, "ORGANIZATION_TEXT_CANDIDATES", 5)
    text_only = selectors._text_ranking(
        scope=_org_scope(actors), query="router reset", limit=50, hits_sql=selectors._ORGANIZATION_PASSAGE_BM25_SQL
    )
    assert len(text_only) == 5  # the newest five matches, not all thirty
    page = passage_search(organization=actors.org, customer=None, query="router reset", page_size=20)
    assert len(page.results) == 20  # the vector side covers every passage


def _org_scope(actors):
    scope = selectors._Scope(table="memory_archivalpassage m", exact=False)
    scope.add("m.organization_id = %s", actors.org.pk)
    return scope


def _said_by(actors, author, body, *, role="customer", ticket=None):
    message, _ = message_ingest(
        customer=actors.customer,
        ticket=ticket or actors.open_ticket,
        body=body,
        author_role=role,
        author_name=author,
        announce=False,
    )
    return message


def test_named_authors_reads_first_names_possessives_and_full_names():
    authors = {"Dana Whitfield", "Sam", ""}
    assert selectors.named_authors("What did Dana say about the refund?", authors) == {"Dana Whitfield"}
    assert selectors.named_authors("What is Sam\u2019s favourite router?", authors) == {"Sam"}
    assert selectors.named_authors("Did dana whitfield pay?", authors) == {"Dana Whitfield"}
    assert selectors.named_authors("What did they say about the refund?", authors) == set()
    # Naming everyone prefers no one.
    assert selectors.named_authors("What did Dana and Sam agree?", authors) == set()


def test_a_person_named_in_the_query_prefers_what_they_wrote(actors, fake, monkeypatch):
    agent = _said_by(actors, "Sam", "Your printer queue is paused; the printer needs a restart.", role="staff")
    dana = _said_by(actors, "Dana Whitfield", "My printer prints blank pages.")

    def first(query):
        return message_search(customer=actors.customer, query=query).results[0].pk

    monkeypatch.setattr(selectors, "LEARNED_RANKING", False)
    monkeypatch.setattr(selectors, "SESSION_WEIGHT", 0.0)
    monkeypatch.setattr(selectors, "AUTHOR_IN_TEXT", False)  # the name matters only through the preference
    monkeypatch.setattr(selectors, "SPEAKER_BOOST", 0.0)
    assert first("What did Dana say about the printer?") == agent.pk  # "printer" twice: first on words alone
    monkeypatch.setattr(selectors, "SPEAKER_BOOST", 1.0)
    assert first("What did Dana say about the printer?") == dana.pk
    assert first("What happened to the printer?") == agent.pk  # no one named: nothing changes


def test_passages_made_from_messages_are_re_scored_with_their_conversation(actors, fake, monkeypatch):
    provenance = Provenance(reason="test")
    sources = [
        _said_by(actors, "Dana Whitfield", "printer offline", ticket=actors.solved_ticket),
        _said_by(actors, "Dana Whitfield", "printer offline again"),
        _said_by(actors, "Dana Whitfield", "still no printing"),
    ]
    alone, together, mate = (
        passage_insert(
            organization=actors.org,
            customer=actors.customer,
            text=message.body,
            provenance=provenance,
            source_message_id=message.pk,
        )[0]
        for message in sources
    )
    loose, _ = passage_insert(
        organization=actors.org, customer=actors.customer, text="loose fact", provenance=provenance
    )
    ranked = [(alone.pk, 0.50), (together.pk, 0.48), (mate.pk, 0.20), (loose.pk, 0.10)]
    monkeypatch.setattr(selectors, "DATE_BOOST", 0.0)
    monkeypatch.setattr(selectors, "SESSION_WEIGHT", 0.2)
    reranked = selectors._passage_rerank(list(ranked), query="printer offline")
    assert [pk for pk, _ in reranked] == [together.pk, alone.pk, mate.pk, loose.pk]
    assert dict(reranked)[loose.pk] == pytest.approx(0.10)  # a passage from no message is a conversation alone


def test_a_turn_that_asks_passes_part_of_its_score_to_the_reply(actors, fake, monkeypatch):
    when = datetime(2025, 3, 12, tzinfo=UTC)
    ticket = actors.open_ticket
    asked = _say(actors, "Which printer model do you have?", ticket=ticket, when=when)
    reply = _say(actors, "An HP LaserJet 4250 from the office.", ticket=ticket, when=when.replace(second=1))
    other = _say(actors, "The printer model list is on the website.", ticket=actors.solved_ticket, when=when)
    for name, value in (("SESSION_WEIGHT", 0.0), ("DATE_BOOST", 0.0), ("SPEAKER_BOOST", 0.0)):
        monkeypatch.setattr(selectors, name, value)
    ranked = [(asked.pk, 0.50), (other.pk, 0.45), (reply.pk, 0.30)]
    monkeypatch.setattr(selectors, "QUESTION_WEIGHT", 0.7)
    monkeypatch.setattr(selectors, "ANSWER_SHARE", 0.3)
    reranked = _message_rerank(list(ranked), query="printer model")
    assert [pk for pk, _ in reranked] == [other.pk, reply.pk, asked.pk]
    assert dict(reranked)[asked.pk] == pytest.approx(0.50 * 0.7)
    assert dict(reranked)[reply.pk] == pytest.approx(0.30 + 0.3 * 0.50)
    # The reply gains only when it is a candidate itself: nothing outside the search's scope is added.
    alone = _message_rerank([(asked.pk, 0.50), (other.pk, 0.45)], query="printer model")
    assert [pk for pk, _ in alone] == [other.pk, asked.pk]
    # A statement is not a question: its next turn gains nothing.
    stated = _message_rerank([(other.pk, 0.45), (reply.pk, 0.30)], query="printer model")
    assert dict(stated) == {other.pk: 0.45, reply.pk: 0.30}
    monkeypatch.setattr(selectors, "QUESTION_WEIGHT", 1.0)
    monkeypatch.setattr(selectors, "ANSWER_SHARE", 0.0)
    assert _message_rerank(list(ranked), query="printer model") == ranked


def test_a_passage_that_asks_passes_part_of_its_score_to_the_reply_passage(actors, fake, monkeypatch):
    when = datetime(2025, 3, 12, tzinfo=UTC)
    asked = _say(actors, "Which printer model do you have?", when=when)
    reply = _say(actors, "An HP LaserJet 4250 from the office.", when=when.replace(second=1))
    provenance = Provenance(reason="test")
    asked_p, reply_p = (
        passage_insert(
            organization=actors.org,
            customer=actors.customer,
            text=f"Dana: {message.body}",
            provenance=provenance,
            source_message_id=message.pk,
        )[0]
        for message in (asked, reply)
    )
    loose, _ = passage_insert(
        organization=actors.org, customer=actors.customer, text="Is the printer under warranty?", provenance=provenance
    )
    for name, value in (("SESSION_WEIGHT", 0.0), ("DATE_BOOST", 0.0), ("SPEAKER_BOOST", 0.0)):
        monkeypatch.setattr(selectors, name, value)
    monkeypatch.setattr(selectors, "QUESTION_WEIGHT", 0.7)
    monkeypatch.setattr(selectors, "ANSWER_SHARE", 0.3)
    ranked = [(asked_p.pk, 0.50), (loose.pk, 0.40), (reply_p.pk, 0.30)]
    reranked = dict(selectors._passage_rerank(list(ranked), query="printer model"))
    assert reranked[asked_p.pk] == pytest.approx(0.35)
    assert reranked[reply_p.pk] == pytest.approx(0.30 + 0.3 * 0.50)  # its message replies to the question's
    assert reranked[loose.pk] == pytest.approx(0.40 * 0.7)  # asks, made from no message: no reply to give to
