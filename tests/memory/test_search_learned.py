"""The learned ranking (``LEARNED_RANKING``): a score over features that PostgreSQL reads for each candidate, their
weighted sum plus one small hidden layer over the same features (``LEARNED_HIDDEN`` for one customer's messages,
``LEARNED_PASSAGE_HIDDEN`` for one customer's passages).

The weights were fitted on LoCoMo's tune half and confirmed on validate (docs/recall.md, steps 4, 8 and 9); these tests
pin what each feature is, what the hidden layer adds, and that the search orders by the score.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from memory import selectors
from memory.selectors import _Candidate, message_search, passage_search
from memory.services import Provenance, passage_insert
from tests.memory.fake_embedder import use_fake
from tickets.models import TicketMessage
from tickets.services import TicketChanges, message_ingest, ticket_upsert

WHEN = datetime(2025, 3, 12, 9, 0, tzinfo=UTC)


@pytest.fixture
def fake(settings):
    return use_fake(settings)


def _ticket(actors, name, when=WHEN):
    return ticket_upsert(
        organization=actors.org,
        customer=actors.customer,
        integration_id=None,
        external_id=f"learned-{name}",
        changes=TicketChanges(subject=name, channel="chat"),
        created_at=when,
        source_updated_at=when,
    )


def _say(actors, ticket, body, *, when, author="Dana Whitfield", role=TicketMessage.Role.CUSTOMER):
    message, _ = message_ingest(
        customer=actors.customer,
        ticket=ticket,
        body=body,
        author_role=role,
        author_name=author,
        created_at=when,
        announce=False,
    )
    return message


def test_the_score_is_the_weighted_sum_of_the_features_postgresql_reads(actors, fake):
    chat = _ticket(actors, "chat")
    asked = _say(actors, chat, "Which printer model do you have?", when=WHEN, author="Sam", role="staff")
    reply = _say(actors, chat, "An HP LaserJet 4250 from the office.", when=WHEN + timedelta(seconds=1))
    later = _say(actors, chat, "Thanks!", when=WHEN + timedelta(seconds=2), author="Sam", role="staff")
    june = WHEN + timedelta(days=90)
    other = _say(actors, _ticket(actors, "web", june), "The model list is online.", when=june)
    facts = selectors._facts(selectors._MESSAGE_FACTS_SQL, [asked.pk, reply.pk, later.pk, other.pk])
    # (conversation, time, hash, author, asks, turn, next turn, words, opens its conversation, text)
    assert facts[asked.pk][4:] == (True, asked.pk, reply.pk, 6, True, "Which printer model do you have?")
    assert facts[reply.pk][4:] == (False, reply.pk, later.pk, 7, False, "An HP LaserJet 4250 from the office.")
    assert facts[other.pk][7:] == (5, True, "The model list is online.")

    # unnamed: the similarity to the query without "Dana" (the reply is nearest to it); sentence: the best of a
    # candidate's sentences' (the question has a sentence nearer still; the others have no sentences)
    pool = {
        asked.pk: _Candidate(text=4.0, text_place=1, sim=0.8, near=0.3, vector_place=1, unnamed=0.4, sentence=0.9),
        reply.pk: _Candidate(text=1.0, text_place=2, sim=0.3, near=0.8, vector_place=0, unnamed=0.8),
        other.pk: _Candidate(text=0.0, text_place=0, sim=0.6, near=0.0, vector_place=2, unnamed=0.2),
    }
    scores = selectors._learned_scores(pool, facts, query="What printer model did Dana say in March 2025?")
    k = selectors.RRF_K
    rrf_asked = selectors.TEXT_WEIGHT / (k + 1) + selectors.VECTOR_WEIGHT / (k + 1)
    rrf_reply = selectors.TEXT_WEIGHT / (k + 2)
    expected_reply = (
        selectors.LEARNED_TEXT * 1.0 / 4.0
        + selectors.LEARNED_MEANING * 0.3 / 0.8
        + selectors.LEARNED_NEAR * 0.8
        + selectors.LEARNED_REPLY * k * rrf_asked  # it answers a candidate that asks
        + selectors.LEARNED_SUPPORT * k * rrf_asked  # the other candidate of its conversation
        + selectors.LEARNED_DATED  # written in March 2025
        + selectors.LEARNED_NAMED  # Dana wrote it; Sam did not
        + selectors.LEARNED_WORDS * math.log1p(7)
        + selectors.LEARNED_PEER_TEXT * 1.0  # the best other candidate of its conversation: the question
        + selectors.LEARNED_PEER_MEANING * 1.0
        + selectors.LEARNED_UNNAMED * 1.0  # the best similarity to the query without names
        + selectors.LEARNED_SENTENCE * 0.8 / 0.9  # its own (no sentences), over the question's best sentence
    )
    expected_asked = (
        selectors.LEARNED_TEXT
        + selectors.LEARNED_MEANING
        + selectors.LEARNED_NEAR * 0.3
        + selectors.LEARNED_PLACE * k / (k + 1)
        + selectors.LEARNED_ASKS
        + selectors.LEARNED_SUPPORT * k * rrf_reply
        + selectors.LEARNED_DATED
        + selectors.LEARNED_WORDS * math.log1p(6)
        + selectors.LEARNED_OPENS
        + selectors.LEARNED_PEER_TEXT * 1.0 / 4.0  # its conversation's other candidate: the reply
        + selectors.LEARNED_PEER_MEANING * 0.3 / 0.8
        + selectors.LEARNED_UNNAMED * 0.4 / 0.8
        + selectors.LEARNED_SENTENCE * 1.0  # its best sentence is the best of all
    )
    assert scores[reply.pk] == pytest.approx(expected_reply)
    assert scores[asked.pk] == pytest.approx(expected_asked)
    # Dana's, in another conversation written in June: no date, no support, no reply, no peer; it opens its
    # conversation.
    assert scores[other.pk] == pytest.approx(
        selectors.LEARNED_MEANING * 0.6 / 0.8
        + selectors.LEARNED_PLACE * k / (k + 2)
        + selectors.LEARNED_NAMED
        + selectors.LEARNED_WORDS * math.log1p(5)
        + selectors.LEARNED_OPENS
        + selectors.LEARNED_UNNAMED * 0.2 / 0.8
        + selectors.LEARNED_SENTENCE * 0.2 / 0.9
    )
    # The reply, Dana's and dated, now leads: its conversation's best other candidate (the question) lifts it.
    assert sorted(scores, key=lambda pk: -scores[pk]) == [reply.pk, asked.pk, other.pk]


def test_search_orders_by_the_learned_score(actors, fake, monkeypatch):
    # The linear score, whose single weights are switched off below (the hidden layer of one customer's message
    # search, step 8, reads every feature at once: its own tests below).
    monkeypatch.setattr(selectors, "LEARNED_HIDDEN", ())
    chat = _ticket(actors, "chat")
    asked = _say(actors, chat, "Which printer model do you have?", when=WHEN, author="Sam", role="staff")
    reply = _say(actors, chat, "An HP LaserJet 4250 from the office.", when=WHEN + timedelta(seconds=1))
    june = _ticket(actors, "june", WHEN + timedelta(days=90))
    listed = _say(actors, june, "The printer model list is on the printer website.", when=WHEN + timedelta(days=90))

    def order(query):
        found = [m.pk for m in message_search(customer=actors.customer, query=query).results]
        return [pk for pk in found if pk in {asked.pk, reply.pk, listed.pk}]

    # The question and its reply back each other (each is the other's best candidate of the conversation): they
    # come before the June statement, which matches the words best but is alone in its conversation.
    backed = order("printer model")
    assert set(backed[:2]) == {asked.pk, reply.pk}
    assert backed[2] == listed.pk
    with monkeypatch.context() as alone:
        alone.setattr(selectors, "LEARNED_PEER_TEXT", 0.0)
        alone.setattr(selectors, "LEARNED_PEER_MEANING", 0.0)
        assert order("printer model") == [listed.pk, asked.pk, reply.pk]
    # Named: March 2025 and Dana. The reply, in March and by Dana, comes first; the June statement last.
    assert order("Which printer model did Dana have in March 2025?") == [reply.pk, asked.pk, listed.pk]
    monkeypatch.setattr(selectors, "LEARNED_DATED", 0.0)
    monkeypatch.setattr(selectors, "LEARNED_NAMED", 0.0)
    monkeypatch.setattr(selectors, "LEARNED_PEER_TEXT", 0.0)
    monkeypatch.setattr(selectors, "LEARNED_PEER_MEANING", 0.0)
    # Without the date, the name and the conversation's other candidate, the words put the June statement first.
    assert order("Which printer model did Dana have in March 2025?")[0] == listed.pk


def test_passages_are_ranked_by_the_learned_score_with_their_messages_conversation(
    actors, fake, django_capture_on_commit_callbacks
):
    chat = _ticket(actors, "chat")
    asked = _say(actors, chat, "Which printer model do you have?", when=WHEN, author="Sam", role="staff")
    reply = _say(actors, chat, "An HP LaserJet 4250 from the office.", when=WHEN + timedelta(seconds=1))
    provenance = Provenance(reason="test")
    with django_capture_on_commit_callbacks(execute=True):  # embedded, as after any commit
        asked_p, reply_p = (
            passage_insert(
                organization=actors.org,
                customer=actors.customer,
                text=f"{message.author_name}: {message.body}",
                provenance=provenance,
                source_message_id=message.pk,
            )[0]
            for message in (asked, reply)
        )
        loose, _ = passage_insert(
            organization=actors.org, customer=actors.customer, text="Printer model noted.", provenance=provenance
        )
    facts = selectors._facts(selectors._PASSAGE_FACTS_SQL, [asked_p.pk, reply_p.pk, loose.pk])
    assert facts[asked_p.pk][4:] == (True, asked.pk, reply.pk, 7, True, "Sam: Which printer model do you have?")
    # made from no message: no turn, opens nothing
    assert facts[loose.pk][5:] == (None, None, 3, False, "Printer model noted.")

    def order(customer):
        page = passage_search(organization=actors.org, customer=customer, query="Dana printer model March 2025")
        return [p.pk for p in page.results]

    # Dana's reply is a March turn of a conversation that opened with a question about the printer model.
    assert order(actors.customer)[:3] == [reply_p.pk, asked_p.pk, loose.pk]
    assert order(None)[:3] == [reply_p.pk, asked_p.pk, loose.pk]  # organisation-wide: the same features


def test_the_hidden_layer_adds_tanh_units_of_the_same_features(actors, fake, monkeypatch):
    chat = _ticket(actors, "chat")
    asked = _say(actors, chat, "Which printer model do you have?", when=WHEN, author="Sam", role="staff")
    reply = _say(actors, chat, "An HP LaserJet 4250 from the office.", when=WHEN + timedelta(seconds=1))
    facts = selectors._facts(selectors._MESSAGE_FACTS_SQL, [asked.pk, reply.pk])
    pool = {
        asked.pk: _Candidate(text=4.0, text_place=1, sim=0.8, near=0.3, vector_place=1),
        reply.pk: _Candidate(text=1.0, text_place=2, sim=0.3, near=0.8, vector_place=0),
    }
    query = "What printer model did Dana say in March 2025?"
    linear = selectors._learned_scores(pool, facts, query=query)  # no neighbours read (passages): the linear score
    # Two units: one reads the text feature (BM25 over the best: 1 and 1/4), the other the asks feature (1 and 0)
    # and the named one (Dana wrote the reply).
    features = len(selectors._learned_weights())
    text_unit = (0.5, (2.0,) + (0.0,) * (features - 1), 3.0)
    asks_named = [0.0] * features
    asks_named[4], asks_named[8] = 1.5, -1.0
    monkeypatch.setattr(selectors, "LEARNED_HIDDEN", (text_unit, (-0.2, tuple(asks_named), -2.0)))
    monkeypatch.setattr(selectors, "LEARNED_MESSAGE_WEIGHTS", selectors._learned_weights())
    # Without neighbours the layer is not used (passage search, one customer's or organisation-wide).
    assert selectors._learned_scores(pool, facts, query=query) == linear
    scores = selectors._learned_scores(pool, facts, query=query, neighbours=True)
    assert scores[asked.pk] - linear[asked.pk] == pytest.approx(
        3.0 * math.tanh(0.5 + 2.0) - 2.0 * math.tanh(-0.2 + 1.5)
    )
    assert scores[reply.pk] - linear[reply.pk] == pytest.approx(
        3.0 * math.tanh(0.5 + 2.0 / 4.0) - 2.0 * math.tanh(-0.2 - 1.0)
    )
    # No layer: one customer's messages get the linear score too.
    monkeypatch.setattr(selectors, "LEARNED_HIDDEN", ())
    assert selectors._learned_scores(pool, facts, query=query, neighbours=True) == linear


def test_passages_have_a_hidden_layer_of_their_own(actors, fake, monkeypatch):
    chat = _ticket(actors, "chat")
    asked = _say(actors, chat, "Which printer model do you have?", when=WHEN, author="Sam", role="staff")
    reply = _say(actors, chat, "An HP LaserJet 4250 from the office.", when=WHEN + timedelta(seconds=1))
    facts = selectors._facts(selectors._MESSAGE_FACTS_SQL, [asked.pk, reply.pk])
    pool = {  # passages read no neighbour similarity: near is 0
        asked.pk: _Candidate(text=4.0, text_place=1, sim=0.8, near=0.0, vector_place=1),
        reply.pk: _Candidate(text=1.0, text_place=2, sim=0.3, near=0.0, vector_place=0),
    }
    query = "What printer model did Dana say in March 2025?"
    monkeypatch.setattr(selectors, "LEARNED_PASSAGE_HIDDEN", ())
    linear = selectors._learned_scores(pool, facts, query=query, passages=True)  # no layer: the step-7 score
    assert linear == selectors._learned_scores(pool, facts, query=query)
    features = len(selectors._learned_weights())
    text_unit = (0.5, (2.0,) + (0.0,) * (features - 1), 3.0)  # reads the text feature: 1 and 1/4
    doubled = tuple(2.0 * weight for weight in selectors._learned_weights())
    monkeypatch.setattr(selectors, "LEARNED_PASSAGE_HIDDEN", (text_unit,))
    monkeypatch.setattr(selectors, "LEARNED_PASSAGE_WEIGHTS", doubled)
    # Step 8's message layer is not read: only the passages' own weights and units.
    monkeypatch.setattr(selectors, "LEARNED_HIDDEN", ((9.0, (9.0,) * features, 9.0),))
    scores = selectors._learned_scores(pool, facts, query=query, passages=True)
    assert scores[asked.pk] == pytest.approx(2.0 * linear[asked.pk] + 3.0 * math.tanh(0.5 + 2.0))
    assert scores[reply.pk] == pytest.approx(2.0 * linear[reply.pk] + 3.0 * math.tanh(0.5 + 2.0 / 4.0))
    # Not one customer's passages (organisation-wide passage search): the step-7 score.
    assert selectors._learned_scores(pool, facts, query=query) == linear


@pytest.mark.parametrize(
    ("weights", "layer"),
    [("LEARNED_MESSAGE_WEIGHTS", "LEARNED_HIDDEN"), ("LEARNED_PASSAGE_WEIGHTS", "LEARNED_PASSAGE_HIDDEN")],
)
def test_the_shipped_hidden_layers_read_every_feature(weights, layer):
    features = len(selectors._learned_weights())
    assert len(getattr(selectors, weights)) == features
    assert getattr(selectors, layer)
    for bias, unit_weights, output in getattr(selectors, layer):
        assert len(unit_weights) == features
        assert all(math.isfinite(x) for x in (bias, output, *unit_weights))


def test_the_passage_layer_gives_near_no_weight():
    # Passages read no neighbour similarity (near is 0 for them): the passage layer has nothing to weigh it by.
    near = 2
    assert selectors.LEARNED_PASSAGE_WEIGHTS[near] == 0.0
    assert all(unit_weights[near] == 0.0 for _, unit_weights, _ in selectors.LEARNED_PASSAGE_HIDDEN)


def test_each_search_scores_with_its_own_layer(actors, fake, monkeypatch):
    chat = _ticket(actors, "chat")
    _say(actors, chat, "The printer model is an HP LaserJet.", when=WHEN)
    seen = []
    scores = selectors._learned_scores

    def capture(pool, facts, *, query, **options):
        seen.append((options.get("neighbours", False), options.get("passages", False)))
        return scores(pool, facts, query=query, **options)

    monkeypatch.setattr(selectors, "_learned_scores", capture)
    message_search(customer=actors.customer, query="printer model")
    passage_insert(
        organization=actors.org,
        customer=actors.customer,
        text="Printer model noted.",
        provenance=Provenance(reason="test"),
    )
    passage_search(organization=actors.org, customer=actors.customer, query="printer model")
    passage_search(organization=actors.org, customer=None, query="printer model")
    # one customer's messages: step 8's layer; one customer's passages: step 9's; organisation-wide passages: linear
    assert seen == [(True, False), (False, True), (False, False)]


@pytest.mark.parametrize(
    ("body", "timed"),
    [
        ("I went to a support group yesterday and it was so powerful.", True),
        ("Last Friday at dance class with a group of friends I felt it.", True),
        ("We went camping two weekends ago.", True),
        ("I'm hosting a dance competition next month.", True),
        ("I swim on Saturdays.", True),
        ("We met the other day.", True),
        ("Next   winter we move.", True),
        ("It was the last, week-long trip.", False),  # the words of "last week", but not the phrase
        ("It has been a long week.", False),
        ("I was in Chicago, it was awesome!", False),  # "ago" inside a word
        ("This is the last thing I needed.", False),
        ("The router fell back to the fallback network.", False),
    ],
)
def test_states_time(body, timed):
    assert selectors.states_time(body) is timed


def test_a_passage_states_a_time_like_its_text(actors, fake):
    provenance = Provenance(reason="test")
    timed, _ = passage_insert(
        organization=actors.org,
        customer=actors.customer,
        text="Dana: the router died yesterday.",
        provenance=provenance,
    )
    plain, _ = passage_insert(
        organization=actors.org, customer=actors.customer, text="Dana: the router died.", provenance=provenance
    )
    facts = selectors._facts(selectors._PASSAGE_FACTS_SQL, [timed.pk, plain.pk])
    assert (facts[timed.pk][9], facts[plain.pk][9]) == ("Dana: the router died yesterday.", "Dana: the router died.")
    pool = {pk: _Candidate(text=1.0, text_place=1, sim=0.5, vector_place=1) for pk in (timed.pk, plain.pk)}
    scores = selectors._learned_scores(pool, facts, query="When did the router die?")
    words = selectors.LEARNED_WORDS * (math.log1p(5) - math.log1p(4))  # the plain one has one word fewer
    assert scores[timed.pk] - scores[plain.pk] == pytest.approx(
        selectors.LEARNED_TIMED + selectors.LEARNED_WHEN_TIMED + words
    )


@pytest.mark.parametrize(
    ("query", "asks"),
    [
        ("When did Dana's router fail?", True),
        ("what year did she move to Berlin", True),
        ("How long has the printer been broken?", True),
        ("Since when is the refund pending?", True),
        ("Did the refund arrive, and when?", True),
        ("What router does Dana have?", False),
        ("Whenever it rains, what fails?", False),
    ],
)
def test_asks_when(query, asks):
    assert selectors.asks_when(query) is asks


def test_best_of_others_is_the_best_value_of_the_other_candidates_of_the_conversation():
    facts = {1: ("a",), 2: ("a",), 3: ("a",), 4: ("b",), 5: ("c",), 6: ("c",)}
    values = {1: 0.9, 2: 0.5, 3: 0.2, 4: 0.7, 5: 0.4, 6: 0.4}
    assert selectors._best_of_others(values, facts) == {1: 0.5, 2: 0.9, 3: 0.9, 4: 0.0, 5: 0.4, 6: 0.4}


def test_a_turn_that_states_a_time_answers_a_when_question(actors, fake, monkeypatch):
    monkeypatch.setattr(selectors, "LEARNED_HIDDEN", ())  # the linear score, whose time weights are switched off below
    timed = _say(actors, _ticket(actors, "first"), "The printer toner was replaced yesterday.", when=WHEN)
    plain = _say(actors, _ticket(actors, "second"), "The printer toner was replaced on site.", when=WHEN)

    def order(query):
        found = [m.pk for m in message_search(customer=actors.customer, query=query).results]
        return [pk for pk in found if pk in {timed.pk, plain.pk}]

    facts = selectors._facts(selectors._MESSAGE_FACTS_SQL, [timed.pk, plain.pk])
    pool = {pk: _Candidate(text=2.0, text_place=1, sim=0.5, vector_place=1) for pk in (timed.pk, plain.pk)}
    for query, gain in (
        ("When was the printer toner replaced?", selectors.LEARNED_TIMED + selectors.LEARNED_WHEN_TIMED),
        ("Was the printer toner replaced?", selectors.LEARNED_TIMED),
    ):
        scores = selectors._learned_scores(pool, facts, query=query)
        # The same candidates but for the time phrase and one word: what the two time features add.
        words = selectors.LEARNED_WORDS * (math.log1p(6) - math.log1p(7))
        assert scores[timed.pk] - scores[plain.pk] == pytest.approx(gain + words)
    assert order("When was the printer toner replaced?") == [timed.pk, plain.pk]
    monkeypatch.setattr(selectors, "LEARNED_TIMED", 0.0)
    monkeypatch.setattr(selectors, "LEARNED_WHEN_TIMED", 0.0)
    # Without them, the plain turn comes first: it has one word more.
    assert order("When was the printer toner replaced?") == [plain.pk, timed.pk]
