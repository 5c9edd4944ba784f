"""One customer's message words kept in the process: BM25 without reading every row on every search.

``selectors._MESSAGE_HITS_SQL`` scores a query over one customer's messages by reading all of them: each row's
words, its length, its neighbours in the conversation and its author's name. That read is the same from one search
to the next until the customer's messages change, and it was the largest part of a search (docs/performance.md,
session 10). Here a customer's rows are read once, each with its lexemes and their counts (the ``search_vector``
PostgreSQL keeps), and a search asks the database only for a fingerprint of those rows: their number, the highest
id and the sum of their row versions' transaction ids (``xmin``). Any insert, update, delete or move of one of the
customer's messages changes the fingerprint (an updated row is a new row version with a newer transaction id), and
the rows are read again. The scores are those of the statement, term by term (tests/memory/test_postings.py).

Each process keeps the customers it searched lately, up to ``KEPT_ROWS`` rows in all, each for ``KEPT_SECONDS``
after its last search.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Generic, TypeVar

from django.db import connection

# Rows kept per process across customers (the least recently searched customer goes first). A row costs about
# a kilobyte: its lexemes' postings and its few facts.
KEPT_ROWS = 100_000
KEPT_SECONDS = 3600.0

T = TypeVar("T")

# The fingerprint of a customer's rows, the same of those up to the highest id this process kept (when only rows
# above it are new, just those are read), the query's distinct terms (english stems), and the number and versions
# of the rows' embeddings (memory/kept_vectors.py checks its vectors by them), in one round trip.
_FINGERPRINT_SQL = (
    "SELECT count(*), coalesce(max(m.id), 0), coalesce(sum(m.xmin::text::bigint), 0), "
    "count(*) FILTER (WHERE m.id <= %s), coalesce(sum(m.xmin::text::bigint) FILTER (WHERE m.id <= %s), 0), "
    "ARRAY(SELECT DISTINCT lexeme FROM unnest(tsvector_to_array(to_tsvector('english', %s))) AS lexeme), "
    "(SELECT count(*) FROM memory_messageembedding e WHERE e.customer_id = %s), "
    "(SELECT coalesce(sum(e.xmin::text::bigint), 0) FROM memory_messageembedding e WHERE e.customer_id = %s) "
    "FROM tickets_ticketmessage m WHERE m.customer_id = %s"
)
# Rows above an id, each with its lexemes and how often each occurs (a lexeme stored without positions counts once).
_ROWS_SQL = (
    "SELECT m.id, m.ticket_id, m.created_at, m.is_public, m.author_name, w.lexemes, w.counts, "
    "m.created_at::date, md5(lower(btrim(m.body))), m.body "
    "FROM tickets_ticketmessage m, LATERAL (SELECT array_agg(u.lexeme) AS lexemes, "
    "array_agg(coalesce(array_length(u.positions, 1), 1)) AS counts FROM unnest(m.search_vector) u) w "
    "WHERE m.customer_id = %s AND m.id > %s"
)
# Whether a message of another customer lies in one of these tickets (the application never writes one: a message
# is its ticket's customer's, and a merge moves both). The facts' next and first turns come from the kept rows only
# when none does.
_SHARED_TICKETS_SQL = (
    "SELECT EXISTS (SELECT 1 FROM tickets_ticketmessage n WHERE n.ticket_id = ANY(%s) AND n.customer_id <> %s)"
)
_AUTHORS_SQL = (
    "SELECT a.name, w.lexemes, w.counts FROM unnest(%s::text[]) AS a(name), LATERAL (SELECT array_agg(u.lexeme) "
    "AS lexemes, array_agg(coalesce(array_length(u.positions, 1), 1)) AS counts "
    "FROM unnest(to_tsvector('english', a.name)) u) w"
)


@dataclass(frozen=True)
class Filter:
    """Which of the customer's rows a search reads (``message_search``'s arguments)."""

    public_only: bool = False
    start: datetime | None = None
    end: datetime | None = None

    def __bool__(self) -> bool:
        return self.public_only or self.start is not None or self.end is not None


@dataclass(frozen=True)
class Weights:
    """BM25's constants and how the statement reads a row (``selectors``' settings at the time of the search)."""

    k1: float
    b: float
    neighbour: float  # a neighbouring turn's words count at this weight
    author_in_text: bool  # the author's name counts as words of the row


@dataclass
class Rows:
    """One customer's rows (each at a place: its index in the lists): what BM25 reads of them. Never changed once
    searched: more rows make a new one (``extended``) that shares what did not change."""

    ids: list[int] = field(default_factory=list)
    tickets: list[int | None] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)
    public: list[bool] = field(default_factory=list)
    authors: list[str] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)  # each row's number of lexemes
    lengths_with_author: list[int] = field(default_factory=list)  # the same with its author's name's lexemes
    index: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)  # lexeme -> (places, counts)
    author_words: dict[str, dict[str, int]] = field(default_factory=dict)  # author name -> lexeme -> count
    by_author: dict[str, list[int]] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)  # the places in conversation order (ticket, time, id)
    previous: dict[int, int] = field(default_factory=dict)  # every row's previous and next row in its conversation
    following: dict[int, int] = field(default_factory=dict)
    # What the learned ranking reads of a candidate besides (``facts``): its date (in the connection's time zone),
    # the md5 of its trimmed lower-cased text, its text; and each row's place by id.
    dates: list[date] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)
    place_of: dict[int, int] = field(default_factory=dict)
    shared_tickets: bool = False  # another customer's message lies in one of these rows' tickets

    @classmethod
    def read(cls, customer_id: int) -> Rows:
        return cls().extended(customer_id)

    def extended(self, customer_id: int) -> Rows:
        """These rows and the customer's rows above the highest id among them."""
        with connection.cursor() as cursor:
            cursor.execute(_ROWS_SQL, [customer_id, max(self.ids, default=0)])
            found = cursor.fetchall()
            shared = self.shared_tickets
            if not shared and found:
                cursor.execute(_SHARED_TICKETS_SQL, [sorted({row[1] for row in found if row[1]}), customer_id])
                shared = cursor.fetchone()[0]
            names = sorted({row[4] for row in found} - self.author_words.keys())
            authors = []
            if names:
                cursor.execute(_AUTHORS_SQL, [names])
                authors = cursor.fetchall()
        author_words = dict(self.author_words)
        for author, lexemes, counts in authors:
            author_words[author] = dict(zip(lexemes or (), counts or (), strict=True))
        rows = Rows(
            ids=[*self.ids],
            tickets=[*self.tickets],
            times=[*self.times],
            public=[*self.public],
            authors=[*self.authors],
            lengths=[*self.lengths],
            lengths_with_author=[*self.lengths_with_author],
            index=dict(self.index),
            author_words=author_words,
            by_author=dict(self.by_author),
            dates=[*self.dates],
            hashes=[*self.hashes],
            bodies=[*self.bodies],
            place_of=dict(self.place_of),
            shared_tickets=shared,
        )
        copied: set[str] = set()  # the lexemes whose lists are this object's own already
        copied_authors: set[str] = set()
        for pk, ticket, created, public, author, lexemes, counts, day, text_hash, body in found:
            place = len(rows.ids)
            rows.place_of[pk] = place
            rows.dates.append(day)
            rows.hashes.append(text_hash)
            rows.bodies.append(body)
            rows.ids.append(pk)
            rows.tickets.append(ticket)
            rows.times.append(created)
            rows.public.append(public)
            rows.authors.append(author)
            rows.lengths.append(len(lexemes or ()))
            rows.lengths_with_author.append(len({*(lexemes or ()), *author_words.get(author, {})}))
            if author not in copied_authors:
                rows.by_author[author] = [*rows.by_author.get(author, ())]
                copied_authors.add(author)
            rows.by_author[author].append(place)
            for lexeme, count in zip(lexemes or (), counts or (), strict=True):
                if lexeme not in copied:
                    places, kept_counts = rows.index.get(lexeme, ((), ()))
                    rows.index[lexeme] = ([*places], [*kept_counts])
                    copied.add(lexeme)
                postings = rows.index[lexeme]
                postings[0].append(place)
                postings[1].append(count)
        rows.order = sorted(range(len(rows.ids)), key=rows._conversation_key)
        rows.previous, rows.following = _neighbours(rows, rows.order)
        return rows

    def _conversation_key(self, place: int) -> tuple[bool, int, datetime, int]:
        ticket = self.tickets[place]
        return ticket is None, ticket or 0, self.times[place], self.ids[place]

    def __len__(self) -> int:
        return len(self.ids)


class Kept(Generic[T]):
    """What this process read lately of some customers, by key (a customer, or a customer and a model: the key's
    first item is the customer), each under the fingerprint it was read at, least recently searched first, up to
    ``limit`` in all as ``size`` measures each (rows, bytes). A key not searched for ``KEPT_SECONDS`` is dropped:
    an erased customer's data leaves every process within that time, not only the one that erased them
    (``forget``)."""

    def __init__(self, limit: Callable[[], int], size: Callable[[T], int]) -> None:
        self._limit = limit
        self._size = size
        self._lock = threading.Lock()
        self._kept: OrderedDict[tuple[int, ...], tuple[tuple[Any, ...], T, float]] = OrderedDict()
        self._count = 0

    def get(self, key: tuple[int, ...]) -> tuple[tuple[Any, ...], T] | None:
        """The key's data and the fingerprint it was read at, if this process kept them."""
        with self._lock:
            self._expire()
            kept = self._kept.get(key)
            if kept is None:
                return None
            self._kept[key] = (kept[0], kept[1], time.monotonic())
            self._kept.move_to_end(key)
            return kept[0], kept[1]

    def put(self, key: tuple[int, ...], fingerprint: tuple[Any, ...], value: T) -> None:
        with self._lock:
            self._pop(key)
            limit = self._limit()
            if self._size(value) > limit:
                return
            self._kept[key] = (fingerprint, value, time.monotonic())
            self._count += self._size(value)
            while self._count > limit:
                self._pop(next(iter(self._kept)))

    def forget(self, customer_id: int) -> None:
        """Drop every key of this customer."""
        with self._lock:
            for key in [key for key in self._kept if key[0] == customer_id]:
                self._pop(key)

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
            self._count = 0

    def _pop(self, key: tuple[int, ...]) -> None:
        kept = self._kept.pop(key, None)
        if kept is not None:
            self._count -= self._size(kept[1])

    def _expire(self) -> None:
        oldest = time.monotonic() - KEPT_SECONDS
        while self._kept:
            key, (_, _, used) = next(iter(self._kept.items()))
            if used >= oldest:
                return
            self._pop(key)


_kept: Kept[Rows] = Kept(lambda: KEPT_ROWS, len)


def kept_clear() -> None:
    """Forget every customer's rows (tests; a process that wants its memory back)."""
    _kept.clear()


def kept_forget(customer_id: int) -> None:
    """Forget one customer's rows in this process (their messages were erased)."""
    _kept.forget(customer_id)


@dataclass(frozen=True)
class Checked:
    """A customer's rows as they are now (None: they have no messages), the query's distinct terms (sorted), and the
    fingerprint read with them: the messages' (number, highest id, versions) and their embeddings' (number,
    versions)."""

    rows: Rows | None
    terms: list[str]
    fingerprint: tuple[int, int, int, int, int]
    kept: bool = True  # False: more rows than a process keeps (KEPT_ROWS); the statements score them


def checked(customer_id: int, query: str) -> Checked:
    """The customer's rows, read, or kept and checked by their fingerprint, and the query's terms."""
    kept = _kept.get((customer_id,))
    kept_highest = kept[0][1] if kept is not None else 0
    with connection.cursor() as cursor:
        cursor.execute(_FINGERPRINT_SQL, [kept_highest, kept_highest, query, customer_id, customer_id, customer_id])
        count, highest, versions, count_up_to_kept, versions_up_to_kept, terms, embedded, embedding_versions = (
            cursor.fetchone()
        )
    terms = sorted(terms or ())
    fingerprint = (count, highest, versions)
    if not count:
        _kept.forget(customer_id)  # none left (erased, merged away): their words need not stay here
        return Checked(None, terms, (*fingerprint, embedded, embedding_versions))
    if count > KEPT_ROWS:  # never kept: reading them on every search would cost more than the statement
        _kept.forget(customer_id)
        return Checked(None, terms, (*fingerprint, embedded, embedding_versions), kept=False)
    if kept is not None and kept[0] == fingerprint:
        rows = kept[1]
    else:
        if kept is not None and (kept[0][0], kept[0][2]) == (count_up_to_kept, versions_up_to_kept):
            rows = kept[1].extended(customer_id)  # the kept rows are as they were: only newer ones to read
        else:
            rows = Rows.read(customer_id)
        _kept.put((customer_id,), fingerprint, rows)
    return Checked(rows, terms, (*fingerprint, embedded, embedding_versions))


def scores(
    rows: Rows | None, terms: list[str], *, rows_filter: Filter, weights: Weights, limit: int
) -> list[tuple[int, float]]:
    """(id, BM25 score) of the best ``limit`` of rows ``checked`` returned for the query, best first (ties: newest id
    first), as ``selectors._MESSAGE_HITS_SQL`` scores them."""
    if rows is None or not terms:
        return []
    return _score(rows, terms, rows_filter, weights, limit)


def facts(rows: Rows, ids: Iterable[int]) -> dict[int, tuple[Any, ...]]:
    """What ``selectors._MESSAGE_FACTS_SQL`` reads of each of these messages, but its word count: (conversation, date,
    text hash, author, asks, turn, next turn, opens its conversation, text), for those among the rows; {} when
    another customer's message shares one of their tickets (that statement reads every message of a ticket)."""
    if rows.shared_tickets:
        return {}
    found = {}
    for pk in ids:
        place = rows.place_of.get(pk)
        if place is None:
            continue
        ticket = rows.tickets[place]
        following = rows.following.get(place) if ticket is not None else None
        found[pk] = (
            ticket,
            rows.dates[place],
            rows.hashes[place],
            rows.authors[place],
            rows.bodies[place].rstrip(" ").endswith("?"),
            pk,
            None if following is None else rows.ids[following],
            ticket is None or place not in rows.previous,
            rows.bodies[place],
        )
    return found


def _score(rows: Rows, terms: list[str], rows_filter: Filter, weights: Weights, limit: int) -> list[tuple[int, float]]:
    lengths = rows.lengths_with_author if weights.author_in_text else rows.lengths
    author_words = rows.author_words if weights.author_in_text else {}
    kept = _in_scope(rows, rows_filter)
    if kept is None:
        previous, following = rows.previous, rows.following
        scoped, total_length = len(rows), sum(lengths)
        in_scope: Callable[[int], bool] = _every
    else:
        previous, following = _neighbours(rows, kept)
        scoped, total_length = len(kept), sum(lengths[place] for place in kept)
        in_scope = frozenset(kept).__contains__
    if not scoped:
        return []
    n = float(scoped)
    average = max(total_length / scoped, 1.0)
    k1, b, near = weights.k1, weights.b, weights.neighbour
    scores: dict[int, float] = {}
    for term in terms:  # one term at a time: its postings by place, its document frequency, then its scores
        own: dict[int, float] = {}
        body: list[tuple[int, int]] = []
        places, counts = rows.index.get(term, ((), ()))
        for place, count in zip(places, counts, strict=True):
            if in_scope(place):
                own[place] = float(count)
                body.append((place, count))
        for author, words in author_words.items():
            in_name = words.get(term, 0)
            if in_name:
                for place in rows.by_author.get(author, ()):
                    if in_scope(place):
                        own[place] = own.get(place, 0.0) + in_name
        if not own:
            continue
        documents = len(own)
        frequencies = own
        if near:
            frequencies = dict(own)
            for place, count in body:
                for neighbour in (following.get(place), previous.get(place)):
                    if neighbour is not None:
                        frequencies[neighbour] = frequencies.get(neighbour, 0.0) + near * count
        idf = math.log(1 + (n - documents + 0.5) / (documents + 0.5))
        for place, tf in frequencies.items():
            term_score = idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * lengths[place] / average))
            scores[place] = scores.get(place, 0.0) + term_score
    return heapq.nsmallest(limit, ((rows.ids[place], score) for place, score in scores.items()), key=_best_first)


def _best_first(item: tuple[int, float]) -> tuple[float, int]:
    return -item[1], -item[0]


def _in_scope(rows: Rows, rows_filter: Filter) -> list[int] | None:
    """The places of the rows the filter keeps, in conversation order; None: every row."""
    if not rows_filter:
        return None
    start, end = rows_filter.start, rows_filter.end
    return [
        place
        for place in rows.order
        if (rows.public[place] or not rows_filter.public_only)
        and (start is None or rows.times[place] >= start)
        and (end is None or rows.times[place] <= end)
    ]


def _every(place: int) -> bool:
    return True


def _neighbours(rows: Rows, kept: Iterable[int]) -> tuple[dict[int, int], dict[int, int]]:
    """Each kept row's previous and next kept row in its conversation (the same ticket, or both outside any)."""
    previous: dict[int, int] = {}
    following: dict[int, int] = {}
    before: int | None = None
    for place in kept:
        if before is not None and rows.tickets[before] == rows.tickets[place]:
            previous[place] = before
            following[before] = place
        before = place
    return previous, following
