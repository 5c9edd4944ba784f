"""How search's statements read the database (docs/performance.md): cheaper forms that must score exactly as before.

Each test runs the statement the search runs against the plain form it replaced, on real PostgreSQL.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from memory import selectors
from memory.embeddings import message_embeddings_compute
from memory.models import ArchivalPassage, MessageEmbedding
from memory.selectors import passage_search
from memory.services import Provenance, passage_insert
from memory.synthetic import PassagePlan, passages_copy
from support_agent.merge import customer_merge
from tests.memory.fake_embedder import use_fake
from tickets.models import Customer, TicketMessage
from tickets.services import TicketChanges, message_ingest, ticket_upsert

WHEN = datetime(2025, 3, 12, 9, 0, tzinfo=UTC)
TURNS = [
    ("Dana", "My router drops the wifi every evening, the router light blinks."),
    ("Sam", "Which router model is it?"),
    ("Dana", "A Fritz box. Router router router."),
    ("Sam", "Thanks, I will send a refund for the outage."),
    ("Dana", "Great, the refund for the router outage is welcome."),
]


@pytest.fixture
def fake(settings):
    return use_fake(settings)


def _conversation(actors, name, turns=TURNS, customer=None, start=WHEN, public=True):
    """One conversation of ``turns`` (author, text), a minute apart from ``start``; Dana's turns are the customer's
    (always public), the others staff turns (internal notes unless ``public``)."""
    customer = customer or actors.customer
    ticket = ticket_upsert(
        organization=actors.org,
        customer=customer,
        integration_id=None,
        external_id=f"statements-{name}",
        changes=TicketChanges(subject=name, channel="chat"),
        created_at=start,
        source_updated_at=start,
    )
    messages = []
    for index, (author, body) in enumerate(turns):
        message, _ = message_ingest(
            customer=customer,
            ticket=ticket,
            body=body,
            author_role="customer" if author == "Dana" else "staff",
            author_name=author,
            created_at=start + timedelta(minutes=index),
            is_public=public or author == "Dana",
            announce=False,
        )
        messages.append(message)
    return messages


# A customer's messages as they were read before each row was cut to the query's terms: whole neighbours concatenated,
# every row's author name parsed, rows matched by the OR-ed query.
PLAIN_MESSAGE_HITS_SQL = """
scoped AS (
    SELECT m.id, m.search_vector || to_tsvector('english', m.author_name) AS doc,
        coalesce(lag(m.search_vector) OVER w, '') || coalesce(lead(m.search_vector) OVER w, '') AS near
    FROM {table} WHERE {where}
    WINDOW w AS (PARTITION BY m.ticket_id ORDER BY m.created_at, m.id)
),
stats AS MATERIALIZED (SELECT count(*)::float AS n, greatest(avg(length(doc)), 1)::float AS avgdl FROM scoped),
hits AS (SELECT s.id, s.doc, s.near, length(s.doc) AS len FROM scoped s, orq WHERE s.doc @@ orq.q OR s.near @@ orq.q)
"""


def _plain_bm25(monkeypatch):
    """The statement as it was: every word of every hit (and of its neighbours) unnested, then matched to the terms."""
    monkeypatch.setattr(selectors, "_MESSAGE_HITS_SQL", PLAIN_MESSAGE_HITS_SQL)
    cut = "unnest(ts_filter(setweight(h.doc, 'A', t.lexemes), '{{a}}')) u"
    assert cut in selectors._BM25_SQL
    monkeypatch.setattr(selectors, "_BM25_SQL", selectors._BM25_SQL.replace(cut, "unnest(h.doc) u"))
    # Every hit's neighbour words (a passage's are none), unnested whole and matched to the terms.
    near = """near AS (
        SELECT h.id, u.lexeme, coalesce(array_length(u.positions, 1), 1)::float AS tf
        FROM hits h, unnest(h.near) u WHERE u.lexeme IN (SELECT lexeme FROM terms)
    )"""
    monkeypatch.setattr(selectors, "_PASSAGE_NEAR_POSTINGS_SQL", near)
    monkeypatch.setattr(selectors, "_ORGANIZATION_PASSAGE_BM25_SQL", PLAIN_ORGANIZATION_BM25_SQL)


# The organisation's newest matches as the shared statement scored them before the organisation-wide statement was
# written: whole texts kept, every word unnested and matched to the terms, postings grouped with the (empty) neighbour
# postings and joined back to the hits for their lengths.
PLAIN_ORGANIZATION_BM25_SQL = (
    selectors._BM25_SQL.replace("unnest(ts_filter(setweight(h.doc, 'A', t.lexemes), '{{a}}')) u", "unnest(h.doc) u")
    .replace("{near_postings}", "near AS (SELECT id, lexeme, tf FROM own WHERE false)")
    .replace(
        "{hits_and_stats}",
        """hits AS MATERIALIZED (
    SELECT m.id, m.search_vector AS doc, ''::tsvector AS near, length(m.search_vector) AS len FROM {table}, orq
    WHERE {where} AND m.search_vector @@ to_tsquery('simple', %s)
    ORDER BY m.id DESC LIMIT %s
),
stats AS MATERIALIZED (
    SELECT
        (SELECT greatest(reltuples, 1)::float FROM pg_class WHERE oid = 'memory_archivalpassage'::regclass) AS n,
        greatest((SELECT avg(length(doc)) FROM hits), 1)::float AS avgdl
)""",
    )
    .replace("UNION ALL SELECT id, lexeme, %s * tf FROM near", "UNION ALL SELECT id, lexeme, tf FROM near")
)


def _message_scope(customer):
    scope = selectors._Scope(
        table="tickets_ticketmessage m",
        smoothed_vector_sql=selectors._MESSAGE_SMOOTHED_VECTOR_SQL,
        vector_features_sql=selectors._MESSAGE_VECTOR_FEATURES_SQL,
    )
    scope.add("m.customer_id = %s", customer.pk)
    return scope


def _passage_scope(actors, customer):
    scope = selectors._Scope(table="memory_archivalpassage m")
    scope.add("m.organization_id = %s", actors.org.pk)
    if customer is not None:
        scope.add(selectors.ONE_CUSTOMER_BITMAP, customer.pk)  # as passage_search scopes one customer's passages
    return scope


QUERIES = ["router outage refund", "What did Dana say about the router?", "Fritz box model", "the and of"]


def test_bm25_reads_only_the_query_terms_and_scores_as_the_plain_statement(actors, fake, monkeypatch):
    _conversation(actors, "one")
    _conversation(actors, "two", [("Dana", "Refund please"), ("Sam", "Done."), ("Dana", "The wifi works again")])
    for index in range(3):
        passage_insert(
            organization=actors.org,
            customer=actors.customer if index else actors.other_customer,
            text=f"Router router note {index}: refund of the outage" + " router" * index,
            provenance=Provenance(reason="test"),
        )
    searches = [(_message_scope(actors.customer), "_MESSAGE_HITS_SQL")]
    searches += [(_passage_scope(actors, actors.customer), "_PASSAGE_HITS_SQL")]
    searches += [(_passage_scope(actors, None), "_ORGANIZATION_PASSAGE_BM25_SQL")]

    def scores():
        return [
            selectors._text_scores(scope=scope, query=query, limit=50, hits_sql=getattr(selectors, hits))
            for scope, hits in searches
            for query in QUERIES
        ]

    now = scores()
    _plain_bm25(monkeypatch)
    before = scores()
    assert any(len(ranked) > 3 for ranked in now)  # neighbours and authors match too
    for ranked, expected in zip(now, before, strict=True):
        assert [pk for pk, _ in ranked] == [pk for pk, _ in expected]
        for (_, score), (_, plain) in zip(ranked, expected, strict=True):
            assert score == pytest.approx(plain, rel=1e-12)


def test_one_customers_passages_are_read_through_a_bitmap_that_prefetches_the_heap(
    actors, fake, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        for index in range(5):
            for customer in (actors.customer, actors.other_customer):
                passage_insert(
                    organization=actors.org,
                    customer=customer,
                    text=f"Router note {index} of {customer.name}: refund for the outage",
                    provenance=Provenance(reason="test"),
                )
    ran = []

    def capture(execute, sql, params, many, context):
        ran.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        page = passage_search(organization=actors.org, customer=actors.customer, query="router refund")
    assert {passage.customer_id for passage in page.results} == {actors.customer.pk} and page.total == 5
    # The full-text statement and the vector features' scope the customer so.
    passages = [sql for sql in ran if "memory_archivalpassage m" in sql and "customer_id" in sql]
    assert len(passages) == 2 and all(selectors.ONE_CUSTOMER_BITMAP in sql for sql in passages)

    def plan(clause: str, *, bitmaps: bool) -> str:
        with connection.cursor() as cursor:
            # A handful of rows would be read whole; a large table is not.
            cursor.execute("SET enable_seqscan = off")
            cursor.execute(f"SET enable_bitmapscan = {'on' if bitmaps else 'off'}")
            try:
                cursor.execute(
                    f"EXPLAIN SELECT m.id FROM memory_archivalpassage m WHERE {clause}", [actors.customer.pk]
                )
                return "\n".join(row[0] for row in cursor.fetchall())
            finally:
                cursor.execute("RESET enable_seqscan")
                cursor.execute("RESET enable_bitmapscan")

    # Equality alone can be served by an index scan, which reads the heap page by page, without prefetching; the
    # clause cannot (without bitmaps the planner falls back to reading the table), so a bitmap serves it.
    assert "Index Scan using" in plan("m.customer_id = %s", bitmaps=False)
    assert "Index Scan using" not in plan(selectors.ONE_CUSTOMER_BITMAP, bitmaps=False)
    assert "Bitmap Heap Scan on memory_archivalpassage m" in plan(selectors.ONE_CUSTOMER_BITMAP, bitmaps=True)


def test_message_similarities_read_the_customers_embeddings_and_follow_a_merge(actors, fake):
    duplicate = Customer.objects.create(organization=actors.org, name="Dana W. (duplicate)")
    own = _conversation(actors, "own")
    moved = _conversation(actors, "moved", [("Dana", "The scanner jams"), ("Sam", "Noted.")], customer=duplicate)
    other = _conversation(actors, "other", [("Lee", "My printer jams")], customer=actors.other_customer)
    message_embeddings_compute(message_ids=[m.pk for m in [*own, *moved, *other]])
    assert MessageEmbedding.objects.filter(message__in=[*own, *moved]).count() == len(own) + len(moved)
    customer_merge(source=duplicate, into=actors.customer, user=None, via="api")
    assert set(MessageEmbedding.objects.filter(message__in=moved).values_list("customer_id", flat=True)) == {
        actors.customer.pk
    }
    vector = fake.embed(["printer"])[0]
    rows = selectors._vector_features(
        scope=_message_scope(actors.customer),
        model=fake.name,
        vector=vector,
        limit=100,
        wanted=[],
        vector_sql="",
        distance="",
    )
    by_id = {pk: (sim, near) for pk, sim, near, _ in rows}
    assert set(by_id) == {m.pk for m in [*own, *moved]}  # the customer's, the moved ones included; not Lee's
    assert {row[3] for row in rows} == {None}  # no query without names was given
    assert by_id[moved[0].pk][0] == pytest.approx(1.0, abs=1e-6)  # "scanner" is "printer" to the fake embedder
    assert by_id[moved[1].pk][1] == pytest.approx(1.0, abs=1e-6)  # its neighbour's similarity
    assert rows[0][0] == moved[0].pk


def test_passage_similarities_are_one_minus_the_distance_nearest_first(
    actors, fake, django_capture_on_commit_callbacks
):
    texts = ["printer jam", "printer and router", "router", "refund", "unrelated words entirely", "printer"]
    with django_capture_on_commit_callbacks(execute=True):
        passages = [
            passage_insert(
                organization=actors.org, customer=actors.customer, text=text, provenance=Provenance(reason="test")
            )[0]
            for text in texts
        ]
    vector = fake.embed(["printer"])[0]
    scope = _passage_scope(actors, actors.customer)
    scope.vector_features_sql = selectors._PASSAGE_VECTOR_FEATURES_SQL
    unnamed = fake.embed(["refund"])[0]  # a second query vector: each row's similarity to it is read too
    rows = selectors._vector_features(
        scope=scope,
        model=fake.name,
        vector=vector,
        limit=2,
        wanted=[passages[3].pk],
        vector_sql="",
        distance="",
        unnamed_vector=unnamed,
    )
    expected, expected_unnamed = {}, {}
    for passage in passages:
        stored = fake.embed([passage.text])[0]
        expected[passage.pk] = sum(a * b for a, b in zip(stored, vector, strict=True))
        expected_unnamed[passage.pk] = sum(a * b for a, b in zip(stored, unnamed, strict=True))
    # The two nearest ("printer jam" and "printer" tie at 1: the larger id first), then the wanted one.
    assert [pk for pk, _, _, _ in rows] == [passages[5].pk, passages[0].pk, passages[3].pk]
    for pk, sim, near, sim_unnamed in rows:
        assert sim == pytest.approx(expected[pk], abs=1e-6) and near == 0.0
        assert sim_unnamed == pytest.approx(expected_unnamed[pk], abs=1e-6)
    assert rows[2][3] == pytest.approx(1.0, abs=1e-6)  # "refund"
    assert math.isclose(rows[0][1], rows[1][1], abs_tol=1e-6)


def test_a_page_of_rows_is_read_as_the_orm_reads_them(actors, fake, django_capture_on_commit_callbacks):
    messages = _conversation(actors, "page")
    with django_capture_on_commit_callbacks(execute=True):
        passage, _ = passage_insert(
            organization=actors.org,
            customer=actors.customer,
            text="Router noted.",
            tags=["network"],
            provenance=Provenance(reason="test"),
        )
    for model, ids in ((type(messages[0]), [m.pk for m in messages]), (type(passage), [passage.pk])):
        expected = model.objects.in_bulk([*ids, 10**9])
        rows = selectors._rows_by_id(model, [*ids, 10**9])
        assert set(rows) == set(expected) == set(ids)
        for pk, row in rows.items():
            assert type(row) is model and not row._state.adding and row.get_deferred_fields() == set()
            for field in model._meta.concrete_fields:
                got, want = getattr(row, field.attname), getattr(expected[pk], field.attname)
                assert str(got) == str(want) and type(got) is type(want), field.attname


def test_organisation_wide_similarities_come_with_the_nearest_rows_then_the_wanted_ones(
    actors, fake, django_capture_on_commit_callbacks
):
    texts = ["printer jam", "printer and router", "router", "refund", "printer"]
    with django_capture_on_commit_callbacks(execute=True):
        passages = [
            passage_insert(
                organization=actors.org,
                customer=actors.customer if index % 2 else actors.other_customer,
                text=text,
                provenance=Provenance(reason="test"),
            )[0]
            for index, text in enumerate(texts)
        ]
    vector = fake.embed(["printer"])[0]
    rows = selectors._vector_features(
        scope=_passage_scope(actors, None),
        model=fake.name,
        vector=vector,
        limit=2,
        wanted=[passages[3].pk, passages[2].pk, 10**9],
        vector_sql="SELECT m.id FROM memory_archivalpassage m WHERE m.embedding_model = %s AND {where}",
        distance="m.embedding <=> %s::vector",
    )
    similarity = {p.pk: sum(a * b for a, b in zip(fake.embed([p.text])[0], vector, strict=True)) for p in passages}
    # The two nearest of the organisation (either customer), then the wanted ones by id; an unknown id is dropped.
    assert {pk for pk, _, _, _ in rows[:2]} == {passages[0].pk, passages[4].pk}
    assert [pk for pk, _, _, _ in rows[2:]] == [passages[2].pk, passages[3].pk]
    for pk, sim, near, unnamed in rows:
        assert sim == pytest.approx(similarity[pk], abs=1e-6) and near == 0.0
        assert unnamed is None  # organisation-wide: no one customer's names to leave out


@pytest.mark.django_db
@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "one",
        "Where is my order A-000123?",
        "  padded  both  ",
        " \nnew line first and last\n ",
        "tab\tseparated\t\twords",
        "no-break\u00a0space stays one word",
        "thin\u2009space and ideographic\u3000space split",
        "vertical\x0btab and form\x0cfeed",
        "zero\u200bwidth is not a space",
        "plain ascii  words, two spaces",
        "ascii file\x1cseparator is no space to PostgreSQL",
        "  ascii\twith a tab  ",
    ],
)
def test_word_count_is_what_the_sql_split_counted(text: str) -> None:
    """The facts' word count moved from SQL to Python: the same count as the expression it replaced."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(array_length(regexp_split_to_array(nullif(btrim(%s), ''), '\\s+'), 1), 0)", [text]
        )
        (expected,) = cursor.fetchone()
    assert selectors.word_count(text) == expected


def test_facts_give_each_candidates_date_next_turn_and_opening_as_python_would(actors, fake):
    """The facts statement casts the time to a date in the connection's time zone (the date of the datetime psycopg
    would return) and reads the next and the first turn through the ticket's turn order index."""
    late = [("Dana", "Late at night: the router died."), ("Sam", "Sorry to hear."), ("Dana", "It works again?")]
    messages = _conversation(actors, "late", late)
    TicketMessage.objects.filter(pk=messages[0].pk).update(created_at=datetime(2025, 3, 12, 23, 59, 59, tzinfo=UTC))
    TicketMessage.objects.filter(pk=messages[1].pk).update(created_at=datetime(2025, 3, 13, 0, 0, 0, tzinfo=UTC))
    TicketMessage.objects.filter(pk=messages[2].pk).update(created_at=datetime(2025, 3, 13, 0, 0, 0, tzinfo=UTC))
    facts = selectors._facts(selectors._MESSAGE_FACTS_SQL, [m.pk for m in messages])
    for message in TicketMessage.objects.filter(pk__in=[m.pk for m in messages]):
        assert facts[message.pk][1] == message.created_at.date()  # in the connection's time zone, as read
    first, second, third = (facts[m.pk] for m in messages)
    assert [first[6], second[6], third[6]] == [messages[1].pk, messages[2].pk, None]  # equal times: by id
    assert [first[8], second[8], third[8]] == [True, False, False]
    assert third[4] and not first[4]  # asks
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "tickets_ticketmessage")
    assert constraints["message_ticket_turn_order"]["columns"] == ["ticket_id", "created_at", "id"]


def test_a_candidates_support_is_the_sum_its_peers_sorted_give():
    """``_support`` (one sort per conversation) gives exactly the float the per-candidate sort gave, ties included."""
    rng = random.Random(13)
    for _ in range(500):
        values = [rng.choice([0.05, 0.1, 1 / 11, 1 / 13, 0.6 / 17]) + rng.choice([0.0, 1 / 12]) for _ in range(9)]
        values = values[: rng.randint(1, 9)]
        top = sorted(values, reverse=True)[: selectors.SESSION_TOP + 1]
        for own in values:
            peers = list(values)
            peers.remove(own)
            assert selectors._support(top, own) == sum(sorted(peers, reverse=True)[: selectors.SESSION_TOP])


def _states_time_by_words(text: str) -> bool:
    """``states_time`` as it was before the substring check: every text split into words."""
    words = selectors._WORDS.findall(text.lower())
    if not selectors._TIME_WORDS.isdisjoint(words):
        return True
    for i, word in enumerate(words[:-1]):
        pair = word in selectors._TIME_RELATIVE and words[i + 1] in selectors._TIME_UNITS
        if pair or (word == "other" and words[i + 1] == "day" and i and words[i - 1] == "the"):
            return selectors._TIME_PHRASE.search(text) is not None
    return False


def test_states_time_answers_as_splitting_every_text_into_words():
    """The substring check only answers False where the word check does (random texts of time words and parts)."""
    vocabulary = [
        *sorted(selectors._TIME_WORDS | selectors._TIME_RELATIVE | selectors._TIME_UNITS),
        *("the", "other", "day", "days", "Chicago", "agony", "thistle", "pasta", "weekly", "Mondays'", "FRIDAY"),
        *("router", "is", "it", "we", "a", "I", "\u017funday", "\u212aelvin"),
    ]
    separators = [" ", "  ", ", ", "-", "'", "_", "\n", "", ". "]
    rng = random.Random(29)
    for _ in range(20_000):
        parts = [rng.choice(vocabulary) for _ in range(rng.randint(1, 6))]
        text = "".join(part + rng.choice(separators) for part in parts)
        text = text.upper() if rng.random() < 0.1 else text
        assert selectors.states_time(text) is _states_time_by_words(text), text


def test_a_filter_that_leaves_too_few_rows_gets_one_larger_hnsw_list_before_an_exact_scan(actors, fake):
    plan = PassagePlan(
        organization_id=actors.org.pk,
        customer_ids=[actors.customer.pk, actors.other_customer.pk],
        size=3000,
        per_customer=1500,
        model=fake.name,
        words=["refund", "router", "invoice", "printer", "password", "modem"],
        seed=3,
    )
    passages_copy(plan)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE memory_archivalpassage")
    newest = ArchivalPassage.objects.order_by("-created_at").values_list("created_at", flat=True)[0]
    scope = _passage_scope(actors, None)
    scope.add("m.created_at >= %s", newest - timedelta(seconds=1200))  # the newest 40%: 1,200 of 3,000 rows
    vector = fake.embed(["refund router"])[0]
    limit = 60  # ef_search 120: about 48 of the first list's rows pass the filter

    def nearest():
        with CaptureQueriesContext(connection) as queries, connection.cursor() as cursor:
            cursor.execute("SET enable_seqscan = off")  # the table is small: make the planner take the index
            rows = selectors._nearest_similarities(
                scope=scope,
                model=fake.name,
                literal="[" + ",".join(f"{x:.7g}" for x in vector) + "]",
                limit=limit,
                vector_sql="SELECT m.id FROM memory_archivalpassage m WHERE m.embedding_model = %s AND {where}",
                distance="m.embedding <=> %s::vector",
            )
            cursor.execute("RESET enable_seqscan")
        lists = [int(q["sql"].split("=")[-1]) for q in queries.captured_queries if "hnsw.ef_search" in q["sql"]]
        exact = any("+ 0 LIMIT" in q["sql"] for q in queries.captured_queries)
        return rows, lists, exact

    rows, lists, exact = nearest()
    assert len(rows) == limit and not exact
    assert lists[0] == 120 and len(lists) == 2 and 120 < lists[1] <= selectors.HNSW_EF_SEARCH_MAX
    assert [s for _, s in rows] == sorted((s for _, s in rows), reverse=True)
    # Fewer rows pass the filter than are wanted: whatever the lists, the exact scan ends it, complete.
    scope.add("m.created_at >= %s", newest - timedelta(seconds=40))
    rows, lists, exact = nearest()
    kept = ArchivalPassage.objects.filter(created_at__gte=newest - timedelta(seconds=40)).count()
    assert exact and len(rows) == kept < limit
