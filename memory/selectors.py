"""Reads of memory shared by the agent's tools, the admin and the API.

Search is always scoped to one customer (or, for staff, one organisation) and is hybrid: a vector
ranking (pgvector cosine) and a full-text ranking (PostgreSQL tsvector, IDF-weighted) supply candidates that
a learned linear score ranks (``LEARNED_RANKING``; reciprocal rank fusion and hand-set preferences otherwise).
Text is findable by full text the moment it is stored; by meaning once its embedding lands. Every design
choice below that changes ranking was kept because the LoCoMo benchmark (``manage.py memory_eval``) measured
it; the figures are in docs/recall.md.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

import numpy as np
from django.conf import settings
from django.contrib.postgres.search import SearchQuery, SearchRank
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections, transaction
from django.db.models import QuerySet
from django.utils import timezone

from memory import kept_vectors, postings
from memory.embeddings import EmbeddingError, embedder_get, query_embed_prepare, query_embed_start
from memory.locality import one_customer
from memory.models import ArchivalPassage, MemoryBlock
from memory.query_dates import query_periods
from memory.query_parts import named_words, query_words
from telemetry.metrics import SEARCH_SECONDS
from tickets.models import Customer, Organization, TicketMessage

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Reciprocal rank fusion: score = sum(weight / (RRF_K + rank)). Cormack et al. use 60; on LoCoMo 10 fused
# better (recall@10 0.694 vs 0.628 on two conversations): each ranking's top hits count for more. BM25 is
# the stronger ranking on conversational recall, so the vector ranking weighs 0.6 (0.714 -> 0.743 together
# with BM25_B = 0.4). The README ("Memory search") lists every variant measured.
RRF_K = 10
VECTOR_WEIGHT = 0.6
TEXT_WEIGHT = 1.0
# Each ranking contributes this many candidates beyond the requested page; hybrid search ranks at most
# MAX_RESULTS rows (page through them; the agent never needs more).
CANDIDATE_MARGIN = 50
MAX_RESULTS = 500
# Organisation-wide vector search uses the HNSW index, which filters after it searches: ef_search is
# raised (per transaction) so that a filtered search still finds enough rows. When the filter still leaves too few
# (a date range, tags, superseded passages), the share it kept of the list sizes one more search at a larger
# ef_search, if that stays within HNSW_EF_SEARCH_MAX; exact search is the fallback after that (an exact scan of a
# million-passage organisation takes about a second).
HNSW_EF_SEARCH_MIN = 100
HNSW_EF_SEARCH_FACTOR = 2  # ef_search = this x the rows wanted
HNSW_EF_SEARCH_MAX = 1000
HNSW_RETRY_MARGIN = 1.25  # the second list is this much longer than the kept share says it needs


@dataclass
class SearchPage(Generic[T]):
    results: list[T]
    page: int
    page_size: int
    total: int

    @property
    def has_next(self) -> bool:
        return self.page * self.page_size < self.total


def blocks_for_customer(*, customer: Customer) -> list[MemoryBlock]:
    """The core memory the agent sees for a customer: organisation blocks first, then the customer's."""
    org_blocks = MemoryBlock.objects.filter(organization_id=customer.organization_id, customer__isnull=True)
    own_blocks = MemoryBlock.objects.filter(organization_id=customer.organization_id, customer=customer)
    return list(org_blocks.order_by("label")) + list(own_blocks.order_by("label"))


def block_get(*, customer: Customer, label: str) -> MemoryBlock | None:
    """A block the customer's agent may address by label: the customer's own, else the organisation's."""
    return (
        MemoryBlock.objects.filter(organization_id=customer.organization_id, customer=customer, label=label).first()
        or MemoryBlock.objects.filter(
            organization_id=customer.organization_id, customer__isnull=True, label=label
        ).first()
    )


def passages_for(
    *,
    organization: Organization,
    customer: Customer | None,
    include_invalidated: bool = False,
    include_staff_only: bool = True,
) -> QuerySet[ArchivalPassage]:
    """Archival passages of a customer (or the organisation). ``include_staff_only=False`` is the view of a
    customer-audience agent run: passages derived from internal notes are left out (docs/security.md)."""
    passages = ArchivalPassage.objects.filter(organization=organization)
    if customer is not None:
        passages = passages.filter(customer=customer)
    if not include_invalidated:
        passages = passages.filter(invalidated_at__isnull=True)
    if not include_staff_only:
        passages = passages.filter(staff_only=False)
    return passages


# ----------------------------------------------------------------------------------------------
# Hybrid search


@dataclass
class _Scope:
    """One search's SQL: the table, its vector column, and the WHERE clause that scopes and filters it."""

    table: str
    where: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)
    exact: bool = True  # one customer's rows: exact search (HNSW would post-filter them away)
    smoothed_vector_sql: str = ""
    vector_features_sql: str = ""  # similarities of the nearest rows and of given rows, in one scan
    customer_id: int | None = None  # one customer's rows: the names of their conversations' people are read
    sentences_sql: str = ""  # the best similarity among given rows' sentences (step 7)
    kept_words: postings.Rows | None = None  # the rows that BM25 read (this search's): the candidates' facts too
    checked: postings.Checked | None = None  # the kept words as this search checked them, with the fingerprint
    postings: postings.Filter | None = None  # one customer's messages: BM25 from the words kept in the process

    def add(self, clause: str, *params: Any) -> None:
        self.where.append(clause)
        self.params.extend(params)

    @property
    def sql_where(self) -> str:
        return " AND ".join(self.where) or "TRUE"


def _page_bounds(page: int, page_size: int) -> tuple[int, int]:
    page_size = min(max(page_size, 1), 100)
    offset = (max(page, 1) - 1) * page_size
    return offset, page_size


@SEARCH_SECONDS.labels("messages").time()
def message_search(
    *,
    customer: Customer,
    query: str,
    start: datetime | None = None,
    end: datetime | None = None,
    page: int = 1,
    page_size: int = 10,
    include_internal: bool = True,
) -> SearchPage[TicketMessage]:
    """Recall memory: the customer's messages ranked by hybrid search (newest first for an empty query).

    ``include_internal=False`` (a customer-audience agent run) leaves internal notes out of the whole search
    scope: they are neither returned nor used as a neighbouring turn's words or vector.
    """
    offset, page_size = _page_bounds(page, page_size)
    start, end = _aware(start), _aware(end)
    messages = TicketMessage.objects.filter(customer=customer)
    if not include_internal:
        messages = messages.filter(is_public=True)
    if start:
        messages = messages.filter(created_at__gte=start)
    if end:
        messages = messages.filter(created_at__lte=end)
    if not query.strip():
        ordered = messages.order_by("-created_at", "-id")
        return SearchPage(list(ordered[offset : offset + page_size]), page, page_size, ordered.count())
    scope = _Scope(
        table="tickets_ticketmessage m",
        smoothed_vector_sql=_MESSAGE_SMOOTHED_VECTOR_SQL,
        vector_features_sql=_MESSAGE_VECTOR_FEATURES_SQL,
        customer_id=customer.pk,
        sentences_sql=_MESSAGE_SENTENCES_SQL,
    )
    scope.add("m.customer_id = %s", customer.pk)
    if not include_internal:
        scope.add("m.is_public")
    if start:
        scope.add("m.created_at >= %s", start)
    if end:
        scope.add("m.created_at <= %s", end)
    scope.postings = postings.Filter(public_only=not include_internal, start=start, end=end)
    ranked = _hybrid_rank(
        scope=scope,
        query=query,
        limit=offset + page_size + CANDIDATE_MARGIN,
        vector_sql=(
            "SELECT m.id FROM memory_messageembedding e JOIN tickets_ticketmessage m "
            "ON m.id = e.message_id AND m.customer_id = e.customer_id WHERE e.model = %s AND {where}"
        ),
        distance="e.embedding <=> %s::vector",
        hits_sql=_MESSAGE_HITS_SQL,
        facts_sql=_MESSAGE_FACTS_SQL,
    )
    if not LEARNED_RANKING:
        ranked = _message_rerank(ranked, query=query)
    return _page_of(TicketMessage.objects.all(), ranked, offset=offset, page=page, page_size=page_size)


def _aware(moment: datetime | None) -> datetime | None:
    """A date-time without a zone read in the current time zone, as the ORM reads it (the kept rows' filters compare
    aware date-times)."""
    return timezone.make_aware(moment) if moment is not None and timezone.is_naive(moment) else moment


def message_search_organization(
    *,
    organization: Organization,
    query: str,
    start: datetime | None = None,
    end: datetime | None = None,
    page: int = 1,
    page_size: int = 10,
) -> SearchPage[TicketMessage]:
    """Every customer's messages of one organisation matching the query's words (full text, websearch syntax),
    best first, then newest. For staff and API clients: internal notes included."""
    offset, page_size = _page_bounds(page, page_size)
    messages = TicketMessage.objects.filter(organization=organization).select_related("customer")
    if start:
        messages = messages.filter(created_at__gte=start)
    if end:
        messages = messages.filter(created_at__lte=end)
    ordered: QuerySet[TicketMessage] = messages.order_by("-created_at", "-id")
    if query.strip():
        words = SearchQuery(query, config="english", search_type="websearch")
        ranked = messages.filter(search_vector=words).annotate(rank=SearchRank("search_vector", words))
        ordered = ranked.order_by("-rank", "-created_at", "-id")
    return SearchPage(list(ordered[offset : offset + page_size]), page, page_size, ordered.count())


# After fusion, a message's score is raised by SESSION_WEIGHT x the scores of the other candidates from the
# same ticket (its best SESSION_TOP): evidence clusters in the conversation where the topic came up.
SESSION_WEIGHT = 0.2
SESSION_TOP = 3
# A query that names a date ("in May 2023", "on 13 October, 2023") multiplies the score of messages written
# during that period, or up to DATE_AFTER_DAYS after it, by 1 + DATE_BOOST. A preference, not a filter.
DATE_BOOST = 2.0
DATE_AFTER_DAYS = 14
# A query that names a participant by name ("What did Dana say about ...") multiplies the score of what that
# person wrote by 1 + SPEAKER_BOOST. A preference, not a filter; a query naming no author changes nothing.
# Chosen on LoCoMo's tune half (0.3 / 0.5 / 0.7 / 1.0 / 2.0: recall@10 0.783 / 0.790 / 0.790 / 0.786 / 0.776),
# confirmed on validate (0.740 -> 0.759); docs/recall.md.
SPEAKER_BOOST = 0.5
# After the preferences, the n-th candidate (0-based) of the same conversation keeps TICKET_DECAY**n of its
# score: questions that join facts from several conversations need the page not to be filled by one. 1 is off.
TICKET_DECAY = 1.0
# Messages with the same text (auto-replies, a widget message echoed by a helpdesk) are shown once.
DEDUPLICATE = True
# Before the preferences: a turn that asks (its text ends with "?") keeps QUESTION_WEIGHT of its fused score, and
# the turn that follows it in its conversation, when it is a candidate too, gains ANSWER_SHARE of the question's
# score. A question shares its words with a search for the same topic but rarely holds the fact; the reply does.
# Chosen on LoCoMo's tune half, confirmed on validate, on both targets (docs/recall.md).
QUESTION_WEIGHT = 0.7
ANSWER_SHARE = 0.3


# A text that states when something happened relative to when it was written ("yesterday", "last week", "next
# Friday", "two days ago"): what a "When did ...?" question is answered by (docs/recall.md, step 5). Matched in
# Python on the text the facts query returns (the same regex in PostgreSQL doubled that query's time); the word
# sets decide first, so the regex runs only on the few texts that hold a "last week"-like pair of words.
_WEEKDAY = r"(monday|tuesday|wednesday|thursday|friday|saturday|sunday)s?"
_TIME_PHRASE = re.compile(
    r"\b(yesterday|today|tonight|tomorrow|ago|the other day|recently|lately|(last|this|next|past|coming)\s+"
    rf"(week|weekend|month|year|night|morning|evening|summer|winter|spring|fall|autumn|{_WEEKDAY})s?|{_WEEKDAY})\b",
    re.IGNORECASE,
)
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_TIME_WORDS = frozenset(("yesterday", "today", "tonight", "tomorrow", "ago", "recently", "lately", *_DAYS))
_TIME_WORDS |= {day + "s" for day in _DAYS}
_TIME_RELATIVE = frozenset(("last", "this", "next", "past", "coming"))
_TIME_UNITS = frozenset(
    ("week", "weekend", "month", "year", "night", "morning", "evening", "summer", "winter", "spring", "fall", "autumn")
).union(_DAYS)
_TIME_UNITS |= {unit + "s" for unit in _TIME_UNITS}
_WORDS = re.compile(r"\w+")


# Substrings that a text stating a time must hold (a plural day holds its day, "weekend" holds "week"): most texts
# hold none, and are answered without being split into words.
_TIME_WORD_PARTS = tuple(sorted(_TIME_WORDS - {day + "s" for day in _DAYS}))
_TIME_UNIT_PARTS = tuple(sorted(unit for unit in _TIME_UNITS if not (unit.endswith("s") and unit[:-1] in _TIME_UNITS)))


def _may_state_time(lowered: str) -> bool:
    """False only when ``states_time`` is: the lowered text holds none of the words it looks for, nor both words of
    any pair (a relative word and a unit) or of "the other day"."""
    if any(part in lowered for part in _TIME_WORD_PARTS):
        return True
    if "other" in lowered and "day" in lowered:
        return True
    return any(part in lowered for part in _TIME_RELATIVE) and any(part in lowered for part in _TIME_UNIT_PARTS)


def states_time(text: str) -> bool:
    """Whether the text states a time relative to when it was written (the "timed" feature): ``_TIME_PHRASE``."""
    lowered = text.lower()
    if not _may_state_time(lowered):
        return False
    words = _WORDS.findall(lowered)
    if not _TIME_WORDS.isdisjoint(words):
        return True
    for i, word in enumerate(words[:-1]):
        pair = word in _TIME_RELATIVE and words[i + 1] in _TIME_UNITS
        if pair or (word == "other" and words[i + 1] == "day" and i and words[i - 1] == "the"):
            return _TIME_PHRASE.search(text) is not None  # the words are there; the regex reads what lies between
    return False


# What the re-scoring reads of each candidate: (conversation, date, text hash, author, asks, turn, next turn, words,
# opens its conversation, text). A passage made from a message belongs to that message's ticket and author and is
# that message's turn; any other passage is a conversation of its own, with no turn. The date is cast by PostgreSQL in
# the connection's time zone, the date of the time psycopg would return (parsing each candidate's timestamp in Python
# cost more than the rest of the statement). The next turn and the first turn are read through the ticket's turn
# order index (message_ticket_turn_order): one probe each. A passage's message is read by its primary key, one probe
# each too (OFFSET 0 keeps the planner from turning it into a join: with a few hundred candidates and some ten thousand
# messages it hashed the whole message table, 9-15 ms a search, more as the table grows).
_MESSAGE_FACTS_SQL = (
    "SELECT m.id, m.ticket_id, m.created_at::date, md5(lower(btrim(m.body))), m.author_name, rtrim(m.body) LIKE '%%?', "
    "m.id, (SELECT n.id FROM tickets_ticketmessage n WHERE n.ticket_id = m.ticket_id "
    "AND (n.created_at, n.id) > (m.created_at, m.id) ORDER BY n.created_at, n.id LIMIT 1), "
    "NOT EXISTS (SELECT 1 FROM tickets_ticketmessage b WHERE b.ticket_id = m.ticket_id "
    "AND (b.created_at, b.id) < (m.created_at, m.id)), "
    "m.body "
    "FROM tickets_ticketmessage m WHERE m.id = ANY(%s)"
)
_PASSAGE_FACTS_SQL = (
    "SELECT p.id, coalesce(m.ticket_id, -p.id), p.created_at::date, p.text_hash, coalesce(m.author_name, ''), "
    "rtrim(p.text) LIKE '%%?', m.id, (SELECT n.id FROM tickets_ticketmessage n WHERE n.ticket_id = m.ticket_id "
    "AND (n.created_at, n.id) > (m.created_at, m.id) ORDER BY n.created_at, n.id LIMIT 1), "
    "m.id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM tickets_ticketmessage b WHERE b.ticket_id = m.ticket_id "
    "AND (b.created_at, b.id) < (m.created_at, m.id)), "
    "p.text "
    "FROM memory_archivalpassage p LEFT JOIN LATERAL (SELECT m.id, m.ticket_id, m.author_name, m.created_at "
    "FROM tickets_ticketmessage m WHERE m.id = p.source_message_id OFFSET 0) m ON true "
    "WHERE p.id = ANY(%s)"
)


def _message_rerank(ranked: list[tuple[int, float]], *, query: str) -> list[tuple[int, float]]:
    return _rerank(ranked, query=query, facts_sql=_MESSAGE_FACTS_SQL)


def _passage_rerank(ranked: list[tuple[int, float]], *, query: str) -> list[tuple[int, float]]:
    return _rerank(ranked, query=query, facts_sql=_PASSAGE_FACTS_SQL)


def _rerank(ranked: list[tuple[int, float]], *, query: str, facts_sql: str) -> list[tuple[int, float]]:
    """Fused scores re-scored by conversation support, a named date and a named author; duplicates dropped."""
    periods = query_periods(query) if DATE_BOOST else []
    answers = QUESTION_WEIGHT != 1.0 or ANSWER_SHARE
    if not ranked or not (answers or SESSION_WEIGHT or periods or SPEAKER_BOOST or TICKET_DECAY != 1.0 or DEDUPLICATE):
        return ranked
    facts = _facts(facts_sql, [pk for pk, _ in ranked])
    ranked = [(pk, score) for pk, score in ranked if pk in facts]
    if answers:
        ranked = _questions_to_answers(ranked, facts)
    if SESSION_WEIGHT:
        by_ticket: dict[int, list[float]] = {}
        for pk, score in ranked:
            by_ticket.setdefault(facts[pk][0], []).append(score)
        support = {}
        for pk, score in ranked:
            peers = list(by_ticket[facts[pk][0]])
            peers.remove(score)
            support[pk] = sum(sorted(peers, reverse=True)[:SESSION_TOP])
        ranked = [(pk, score + SESSION_WEIGHT * support[pk]) for pk, score in ranked]
    if periods:
        after = timedelta(days=DATE_AFTER_DAYS)
        dated = {pk for pk, _ in ranked if any(p.contains(facts[pk][1], after=after) for p in periods)}
        ranked = [(pk, score * (1 + DATE_BOOST) if pk in dated else score) for pk, score in ranked]
    if SPEAKER_BOOST:
        named = named_authors(query, {facts[pk][3] for pk, _ in ranked})
        if named:
            ranked = [(pk, score * (1 + SPEAKER_BOOST) if facts[pk][3] in named else score) for pk, score in ranked]
    ranked.sort(key=lambda item: (-item[1], -item[0]))
    if TICKET_DECAY != 1.0:
        shown: dict[int, int] = {}
        decayed = []
        for pk, score in ranked:
            ticket = facts[pk][0]
            decayed.append((pk, score * TICKET_DECAY ** shown.get(ticket, 0)))
            shown[ticket] = shown.get(ticket, 0) + 1
        ranked = sorted(decayed, key=lambda item: (-item[1], -item[0]))
    return _distinct(ranked, facts) if DEDUPLICATE else ranked


def _distinct(ranked: list[tuple[int, float]], facts: dict[int, tuple[Any, ...]]) -> list[tuple[int, float]]:
    """The ranking with each text (facts' hash) once, at its best place."""
    seen: set[str] = set()
    unique = []
    for pk, score in ranked:
        if facts[pk][2] not in seen:
            seen.add(facts[pk][2])
            unique.append((pk, score))
    return unique


def _questions_to_answers(
    ranked: list[tuple[int, float]], facts: dict[int, tuple[Any, ...]]
) -> list[tuple[int, float]]:
    """A turn that asks keeps QUESTION_WEIGHT of its score; the candidate that replies to it gains ANSWER_SHARE."""
    by_turn = {facts[pk][5]: pk for pk, _ in ranked if facts[pk][5] is not None}
    scores = {pk: score * (QUESTION_WEIGHT if facts[pk][4] else 1.0) for pk, score in ranked}
    for pk, score in ranked:
        reply = by_turn.get(facts[pk][6]) if facts[pk][4] else None
        if reply is not None:
            scores[reply] += ANSWER_SHARE * score
    return [(pk, scores[pk]) for pk, _ in ranked]


def _facts(facts_sql: str, ids: list[int], kept: postings.Rows | None = None) -> dict[int, tuple[Any, ...]]:
    """Each candidate's facts; its word count is taken here from the text the statement returns (in SQL, the
    regular expression that split it was nearly half of the statement's time). One customer's messages' facts come
    from the rows this search's BM25 read (``kept``), when it read them in the process; the statement reads the rest
    (a row newer than them)."""
    found = postings.facts(kept, ids) if kept is not None and facts_sql is _MESSAGE_FACTS_SQL else {}
    rest = [pk for pk in ids if pk not in found]
    if rest:
        with connection.cursor() as cursor:
            cursor.execute(facts_sql, [rest])
            found.update((row[0], row[1:]) for row in cursor.fetchall())
    return {pk: (*row[:7], text_measures(row[-1])[0], *row[7:]) for pk, row in found.items()}


# What the ranking reads of a text itself, (word_count, states_time), kept for the texts seen lately: one customer's
# turns are candidates search after search, and measuring each again was a third of the learned score's time.
_MEASURES: dict[str, tuple[int, bool]] = {}
MEASURES_KEPT = 20_000


def text_measures(text: str) -> tuple[int, bool]:
    """``(word_count(text), states_time(text))``, from memory when the same text was measured lately."""
    measures = _MEASURES.get(text)
    if measures is None:
        if len(_MEASURES) >= MEASURES_KEPT:
            _MEASURES.clear()  # simpler than an LRU, and a customer's texts are measured again in one search
        measures = _MEASURES[text] = (word_count(text), states_time(text))
    return measures


def text_measures_clear() -> None:
    """Forget the texts measured (a customer's messages were erased)."""
    _MEASURES.clear()


# White space as PostgreSQL's regular expressions see it under C.UTF-8 (glibc's iswspace: no-break spaces are not).
_SPACES = re.compile("[ \t\n\v\f\r\u1680\u2000-\u2006\u2008-\u200a\u2028\u2029\u205f\u3000]+")


def word_count(text: str) -> int:
    """Pieces of ``text`` between runs of white space, after trimming its outer spaces: SQL's
    ``array_length(regexp_split_to_array(nullif(btrim(text), ''), '\\s+'), 1)``, 0 for an empty text."""
    trimmed = text.strip(" ")
    if trimmed.isascii() and trimmed.isprintable():  # then its only white space is " ", as str.split() sees it too
        return len(trimmed.split())
    return len(_SPACES.split(trimmed)) if trimmed else 0


_WORD = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*", re.UNICODE)


def named_authors(query: str, authors: set[str]) -> set[str]:
    """The authors whose name (first name, or the whole name) the query mentions, possessives included.

    Only some: when the query names every author there is no one to prefer.
    """
    words = query_words(query)  # names are letters only: the numbers among these never match one
    named = set()
    for author in authors:
        parts = [part.casefold() for part in _WORD.findall(author)]
        if parts and (parts[0] in words or " ".join(parts) in query.casefold()):
            named.add(author)
    return named if len(named) < len([a for a in authors if a]) else set()


# Passages are re-scored like messages (a passage made from a message counts as part of its conversation).
PASSAGE_RERANK = True


# One customer's passages are read through a bitmap that prefetches the heap (memory.locality.one_customer).
ONE_CUSTOMER_BITMAP = one_customer("m.customer_id")


@SEARCH_SECONDS.labels("passages").time()
def passage_search(
    *,
    organization: Organization,
    customer: Customer | None,
    query: str,
    tags: list[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    page: int = 1,
    page_size: int = 10,
    include_invalidated: bool = False,
    include_staff_only: bool = True,
) -> SearchPage[ArchivalPassage]:
    """Archival memory of one customer (customer=None: the whole organisation, for staff), hybrid-ranked.

    Superseded passages are left out unless ``include_invalidated``; ``tags`` must all be present;
    ``include_staff_only=False`` (a customer-audience agent run) leaves out passages derived from internal notes.
    """
    offset, page_size = _page_bounds(page, page_size)
    clean_tags = sorted({tag.strip().lower() for tag in tags or [] if tag.strip()})
    if not query.strip():
        passages = passages_for(
            organization=organization,
            customer=customer,
            include_invalidated=include_invalidated,
            include_staff_only=include_staff_only,
        )
        if clean_tags:
            passages = passages.filter(tags__contains=clean_tags)
        if start:
            passages = passages.filter(created_at__gte=start)
        if end:
            passages = passages.filter(created_at__lte=end)
        ordered = passages.order_by("-created_at", "-id")
        return SearchPage(list(ordered[offset : offset + page_size]), page, page_size, ordered.count())
    scope = _Scope(
        table="memory_archivalpassage m",
        exact=customer is not None,
        vector_features_sql=_PASSAGE_VECTOR_FEATURES_SQL if customer is not None else "",
        customer_id=customer.pk if customer is not None else None,
        sentences_sql=_PASSAGE_SENTENCES_SQL,
    )
    scope.add("m.organization_id = %s", organization.pk)
    if customer is not None:
        scope.add(ONE_CUSTOMER_BITMAP, customer.pk)
    if not include_invalidated:
        scope.add("m.invalidated_at IS NULL")
    if not include_staff_only:
        scope.add("NOT m.staff_only")
    if clean_tags:
        scope.add("m.tags @> %s::varchar(100)[]", clean_tags)
    if start:
        scope.add("m.created_at >= %s", start)
    if end:
        scope.add("m.created_at <= %s", end)
    ranked = _hybrid_rank(
        scope=scope,
        query=query,
        limit=offset + page_size + CANDIDATE_MARGIN,
        vector_sql=("SELECT m.id FROM memory_archivalpassage m WHERE m.embedding_model = %s AND {where}"),
        distance="m.embedding <=> %s::vector",
        hits_sql=_PASSAGE_HITS_SQL if customer is not None else _ORGANIZATION_PASSAGE_BM25_SQL,
        facts_sql=_PASSAGE_FACTS_SQL,
    )
    if PASSAGE_RERANK and not LEARNED_RANKING:
        ranked = _passage_rerank(ranked, query=query)
    return _page_of(ArchivalPassage.objects.all(), ranked, offset=offset, page=page, page_size=page_size)


def _page_of(
    queryset: QuerySet[Any], ranked: list[tuple[int, float]], *, offset: int, page: int, page_size: int
) -> SearchPage[Any]:
    window = ranked[offset : offset + page_size]
    rows = _rows_by_id(queryset.model, [pk for pk, _ in window])
    results = []
    for pk, score in window:
        row = rows.get(pk)
        if row is not None:
            row.score = score  # the ranking score (learned, or fused RRF), for callers that show or threshold it
            results.append(row)
    return SearchPage(results, page, page_size, len(ranked))


def _rows_by_id(model: type[Any], ids: list[int]) -> dict[int, Any]:
    """``model.objects.in_bulk(ids)`` through one prepared statement per model: the ORM's compiling of the query
    cost more than the query itself (about half of a page's time)."""
    fields = model._meta.concrete_fields
    known = _ROWS_BY_ID.get(model)
    if known is None:
        columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
        table, key = connection.ops.quote_name(model._meta.db_table), connection.ops.quote_name(model._meta.pk.column)
        statement = f"SELECT {columns} FROM {table} WHERE {key} = ANY(%s)"  # noqa: S608  (names from the model)
        # Only the fields that convert what the database returns (JSON, say): the others are taken as they come.
        converting = [(i, converters) for i, f in enumerate(fields) if (converters := f.get_db_converters(connection))]
        known = _ROWS_BY_ID[model] = (statement, [f.attname for f in fields], converting)
    statement, names, converting = known
    rows = {}
    with connection.cursor() as cursor:
        cursor.execute(statement, [ids])
        for row in cursor.fetchall():
            values = list(row)
            for i, converters in converting:
                for convert in converters:
                    values[i] = convert(values[i], fields[i], connection)
            instance = model.from_db(connection.alias, names, values)
            rows[instance.pk] = instance
    return rows


# Per model: the statement, the fields' attribute names in its column order, and the fields that convert values.
_ROWS_BY_ID: dict[type[Any], tuple[str, list[str], list[tuple[int, list[Callable[..., Any]]]]]] = {}


def _hybrid_rank(
    *, scope: _Scope, query: str, limit: int, vector_sql: str, distance: str, hits_sql: str, facts_sql: str = ""
) -> list[tuple[int, float]]:
    """Ids ranked from the full-text and vector rankings, best first, with their scores: the learned score
    (LEARNED_RANKING, given the facts query) or the RRF fusion that the re-scoring then adjusts."""
    limit = min(limit, MAX_RESULTS)
    if LEARNED_RANKING and facts_sql:
        return _learned_rank(
            scope=scope,
            query=query,
            limit=limit,
            vector_sql=vector_sql,
            distance=distance,
            hits_sql=hits_sql,
            facts_sql=facts_sql,
        )
    # One customer's kept words (and vectors) are checked first: the statement took twice as long beside the model
    # run (docs/performance.md, session 11), which then overlaps the full-text scoring instead.
    _words_checked(scope, query, hits_sql)
    pending = _query_vector_start(query)  # embedded on a worker thread while full text is ranked here
    text_ids = _text_ranking(scope=scope, query=query, limit=limit, hits_sql=hits_sql)
    found = _query_vector_wait(pending)
    vector_ids = []
    if found is not None:
        model, vector = found
        vector_ids = _vector_ranking(
            scope=scope, model=model, vector=vector, limit=limit, vector_sql=vector_sql, distance=distance
        )
    return rrf_fuse([(text_ids, TEXT_WEIGHT), (vector_ids, VECTOR_WEIGHT)], k=RRF_K)[:limit]


def _query_vector_start(query: str) -> tuple[str, Future[list[float]]] | None:
    try:
        embedder = embedder_get()
    except EmbeddingError:
        logger.warning("no embedding backend; searching by full text only", exc_info=True)
        return None
    return embedder.name, query_embed_start(query, embedder=embedder)


def _query_vector_wait(pending: tuple[str, Future[list[float]]] | None) -> tuple[str, list[float]] | None:
    if pending is None:
        return None
    model, future = pending
    try:
        return model, future.result()
    except EmbeddingError:
        # The provider is down or misconfigured: full text alone still answers.
        logger.warning("query embedding failed; searching by full text only", exc_info=True)
        return None


def rrf_fuse(rankings: Sequence[tuple[Sequence[int], float]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion of several rankings of ids, each with its weight."""
    scores: dict[int, float] = {}
    for ids, weight in rankings:
        if weight <= 0:  # a ranking switched off contributes nothing, not even its order
            continue
        for rank, pk in enumerate(ids, start=1):
            scores[pk] = scores.get(pk, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda item: (-item[1], -item[0]))


# Full text is ranked by BM25 computed in SQL: the query's words are OR-ed (plainto_tsquery AND-s them,
# and few messages contain every word of a question) and each is weighted by its rarity in the scope.
BM25_K1 = 1.2
BM25_B = 0.4  # less length normalisation than the usual 0.75: long turns are the informative ones
# A message is also found by the words of the turns around it, at this weight: a reply such as
# "Yes, last Saturday!" only matches a question through the turn it answers. 0 turns it off.
NEIGHBOUR_WEIGHT = 0.5
# The author's name counts as a word of the message ("What did Dana say about ...").
AUTHOR_IN_TEXT = True

# BM25 from the postings of the query's terms (``own``: each row's; ``near``: its neighbours'), joined to the rows that
# carry each row's length (``{rows}``): shared by the statements below.
_BM25_SCORES_SQL = """\
df AS (SELECT lexeme, count(*)::float AS n FROM own GROUP BY lexeme),
postings AS (
    SELECT id, lexeme, sum(tf) AS tf FROM (
        SELECT id, lexeme, tf FROM own
        UNION ALL SELECT id, lexeme, %s * tf FROM near
    ) both_sides GROUP BY id, lexeme
)
SELECT p.id, sum(
    ln(1 + (st.n - coalesce(df.n, 0) + 0.5) / (coalesce(df.n, 0) + 0.5))
    * p.tf * %s / (p.tf + %s * (1 - %s + %s * h.len / st.avgdl))
) AS score
FROM postings p JOIN {rows} h USING (id) LEFT JOIN df USING (lexeme) CROSS JOIN stats st
GROUP BY p.id ORDER BY score DESC, p.id DESC LIMIT %s
"""

# One customer's messages are scored from their words kept in the process (memory/postings.py), as
# _MESSAGE_HITS_SQL scores them; False: by the statement on every search.
POSTINGS_IN_PROCESS = True
# One customer's message vectors and sentence vectors kept in the process too (memory/kept_vectors.py): the vector
# features and sentence similarities of a search need no statement but the fingerprint's. False: the statements.
VECTORS_IN_PROCESS = True

# A row's words are cut to the query's terms in C before they are unnested (the terms weighted A, then only A kept;
# ts_filter keeps every position of a lexeme it keeps, so term frequencies are unchanged): unnesting every word of
# every matching row and joining each to the terms cost a third of the statement. The IN filter still decides.
_BM25_SQL = """
WITH terms AS (
    SELECT DISTINCT lexeme FROM unnest(tsvector_to_array(to_tsvector('english', %s))) AS lexeme
),
orq AS (SELECT to_tsquery('simple', string_agg(quote_literal(lexeme), ' | ')) AS q FROM terms),
term_list AS (SELECT array_agg(lexeme) AS lexemes FROM terms),
{hits_and_stats},
own AS (
    SELECT h.id, u.lexeme, coalesce(array_length(u.positions, 1), 1)::float AS tf
    FROM hits h, term_list t, unnest(ts_filter(setweight(h.doc, 'A', t.lexemes), '{{a}}')) u
    WHERE u.lexeme IN (SELECT lexeme FROM terms)
),
{near_postings},
""" + _BM25_SCORES_SQL.replace("{rows}", "hits")  # noqa: S608  (this module's own SQL)

# Passages have no neighbours, so their ``near`` postings are empty (organisation-wide, a statement of its own leaves
# them out; below). One customer's passages scan the query's own postings with a filter no posting passes (each counts
# at least once), which keeps the plan's shape; it used to cut each hit's empty neighbour words to the query's terms,
# about 1 of the statement's 5 ms over 1,000 passages (session 13). Exact ties in BM25's float sums can break the other
# way than before: 39 of LoCoMo's 1,531 archival pages changed order, recall@5/10/25 did not move.
_PASSAGE_NEAR_POSTINGS_SQL = "near AS (SELECT id, lexeme, tf FROM own WHERE tf < 0)"

# Messages, one statement of their own: a row's neighbours' words come from a window over the whole scope (one
# customer's rows, read once). Each row's text is cut to the query's terms in C (weighted A, then only A kept: every
# position of a kept lexeme stays) and unnested once; a row's neighbours' postings are then its previous and next
# rows' postings, joined by id, not their texts concatenated and unnested again; and an author's name is parsed once
# per author, not once per row. ``len``, the row's own number of lexemes (its author's name included), normalises by
# length. It scores as the statement it replaced (tests/memory/test_search_statements.py) and costs half as much
# (docs/performance.md, session 9).
_MESSAGE_HITS_SQL = """
WITH terms AS (
    SELECT DISTINCT lexeme FROM unnest(tsvector_to_array(to_tsvector('english', %s))) AS lexeme
),
term_list AS (
    SELECT array_agg(lexeme) AS lexemes, to_tsquery('simple', string_agg(quote_literal(lexeme), ' | ')) AS q FROM terms
),
authors AS MATERIALIZED (
    SELECT d.author_name, d.doc, ts_filter(setweight(d.doc, 'A', t.lexemes), '{{a}}') AS cut
    FROM (SELECT a.author_name, {author_doc} AS doc FROM (
        SELECT DISTINCT m.author_name FROM {table} WHERE {where}
    ) a) d, term_list t
),
scoped AS MATERIALIZED (
    SELECT id, len, author_name, body, lag(id) OVER w AS previous_id, lead(id) OVER w AS next_id FROM (
        SELECT m.id, m.ticket_id, m.created_at, length(m.search_vector || a.doc) AS len, m.author_name,
            CASE WHEN m.search_vector @@ t.q THEN ts_filter(setweight(m.search_vector, 'A', t.lexemes), '{{a}}')
            ELSE ''::tsvector END AS body
        FROM {table} JOIN authors a ON a.author_name = m.author_name, term_list t
        WHERE {where} OFFSET 0
    ) cut
    WINDOW w AS (PARTITION BY ticket_id ORDER BY created_at, id)
),
stats AS MATERIALIZED (SELECT count(*)::float AS n, greatest(avg(len), 1)::float AS avgdl FROM scoped),
body_postings AS MATERIALIZED (
    SELECT s.id, u.lexeme, coalesce(array_length(u.positions, 1), 1)::float AS tf
    FROM scoped s, term_list t, unnest(s.body) u
    WHERE length(s.body) > 0 AND u.lexeme = ANY(t.lexemes)
),
own AS MATERIALIZED (
    SELECT id, lexeme, sum(tf) AS tf FROM (
        SELECT id, lexeme, tf FROM body_postings
        UNION ALL
        SELECT s.id, u.lexeme, coalesce(array_length(u.positions, 1), 1)::float
        FROM authors a JOIN scoped s USING (author_name), term_list t, unnest(a.cut) u
        WHERE u.lexeme = ANY(t.lexemes)
    ) parts GROUP BY id, lexeme
),
near AS (
    {near}
),
""" + _BM25_SCORES_SQL.replace("{rows}", "scoped")  # noqa: S608  (this module's own SQL)
_MESSAGE_NEAR_SQL = """SELECT s.id, b.lexeme, b.tf FROM scoped s JOIN body_postings b ON b.id = s.previous_id
    UNION ALL SELECT s.id, b.lexeme, b.tf FROM scoped s JOIN body_postings b ON b.id = s.next_id"""
# One customer's passages: read through the customer index and matched in memory. (Through the GIN index,
# PostgreSQL would fetch every organisation's matching rows first and filter them afterwards.)
_PASSAGE_HITS_SQL = """
scoped AS MATERIALIZED (SELECT m.id, m.search_vector AS doc FROM {table} WHERE {where}),
stats AS MATERIALIZED (SELECT count(*)::float AS n, greatest(avg(length(doc)), 1)::float AS avgdl FROM scoped),
hits AS (SELECT s.id, s.doc, ''::tsvector AS near, length(s.doc) AS len FROM scoped s, orq WHERE s.doc @@ orq.q)
"""
# The whole organisation: BM25 ranks the newest ORGANIZATION_TEXT_CANDIDATES passages that share a word with
# the query; scoring every match made a search grow with the organisation (0.97 s p95 at 100,000 passages).
# The query's tsquery is passed as a constant so that the planner can estimate how many rows match: common
# words are read newest first through the primary key until enough match, rare ones through the GIN index.
# Vector search still covers every passage. Counting every row for the IDF would read the table on each search,
# so the planner's row estimate stands in for the count. One statement of its own: each hit is cut to the query's
# terms as it is read (no row's whole text is kept), carries its length into its postings, and its postings are
# scored as they are, since passages have no neighbours to add (no second grouping, no join back to the hits):
# 0.90 of the shared statement's time (27.7 against 30.9 ms at a million), the same scores (docs/performance.md,
# session 15).
ORGANIZATION_TEXT_CANDIDATES = 5000
_ORGANIZATION_PASSAGE_BM25_SQL = """
WITH terms AS (
    SELECT DISTINCT lexeme FROM unnest(tsvector_to_array(to_tsvector('english', %s))) AS lexeme
),
term_list AS (SELECT array_agg(lexeme) AS lexemes FROM terms),
hits AS MATERIALIZED (
    SELECT m.id, length(m.search_vector) AS len, ts_filter(setweight(m.search_vector, 'A', t.lexemes), '{{a}}') AS cut
    FROM {table}, term_list t
    WHERE {where} AND m.search_vector @@ to_tsquery('simple', %s)
    ORDER BY m.id DESC LIMIT %s
),
stats AS MATERIALIZED (
    SELECT
        (SELECT greatest(reltuples, 1)::float FROM pg_class WHERE oid = 'memory_archivalpassage'::regclass) AS n,
        greatest((SELECT avg(len) FROM hits), 1)::float AS avgdl
),
own AS MATERIALIZED (
    SELECT h.id, h.len, u.lexeme, coalesce(array_length(u.positions, 1), 1)::float AS tf
    FROM hits h, unnest(h.cut) u
    WHERE u.lexeme IN (SELECT lexeme FROM terms)
),
df AS (SELECT lexeme, count(*)::float AS n FROM own GROUP BY lexeme)
SELECT o.id, sum(
    ln(1 + (st.n - df.n + 0.5) / (df.n + 0.5))
    * o.tf * %s / (o.tf + %s * (1 - %s + %s * o.len / st.avgdl))
) AS score
FROM own o JOIN df USING (lexeme) CROSS JOIN stats st
GROUP BY o.id ORDER BY score DESC, o.id DESC LIMIT %s
"""


def _text_ranking(*, scope: _Scope, query: str, limit: int, hits_sql: str) -> list[int]:
    """Ids ranked by BM25 over the scope (k1, b standard; neighbours' words at NEIGHBOUR_WEIGHT)."""
    return [pk for pk, _ in _text_scores(scope=scope, query=query, limit=limit, hits_sql=hits_sql)]


def _text_scores(*, scope: _Scope, query: str, limit: int, hits_sql: str) -> list[tuple[int, float]]:
    """(id, BM25 score) of the scope's best ``limit`` rows for the query, best first."""
    checked = _words_checked(scope, query, hits_sql)
    if checked is not None and scope.postings is not None:
        weights = postings.Weights(k1=BM25_K1, b=BM25_B, neighbour=NEIGHBOUR_WEIGHT, author_in_text=AUTHOR_IN_TEXT)
        return postings.scores(checked.rows, checked.terms, rows_filter=scope.postings, weights=weights, limit=limit)
    params = [query, *scope.params * hits_sql.count("{where}")]
    bm25 = [BM25_K1 + 1, BM25_K1, BM25_B, BM25_B]
    if hits_sql is _ORGANIZATION_PASSAGE_BM25_SQL:
        tsquery = _or_tsquery(query)
        if tsquery is None:
            return []  # only stop words or symbols: no word to rank by
        sql = hits_sql.format(table=scope.table, where=scope.sql_where)
        params += [tsquery, int(ORGANIZATION_TEXT_CANDIDATES), *bm25, limit]
    elif hits_sql.lstrip().startswith("WITH"):  # a whole statement of its own (one customer's messages)
        sql = hits_sql.format(table=scope.table, where=scope.sql_where, **_message_doc())
        params += [NEIGHBOUR_WEIGHT, *bm25, limit]
    else:
        sql = _BM25_SQL.format(
            hits_and_stats=hits_sql.format(table=scope.table, where=scope.sql_where),
            near_postings=_PASSAGE_NEAR_POSTINGS_SQL,
        )
        params += [NEIGHBOUR_WEIGHT, *bm25, limit]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(row[0], float(row[1])) for row in cursor.fetchall()]


def _words_checked(scope: _Scope, query: str, hits_sql: str) -> postings.Checked | None:
    """One customer's message words kept in the process, checked once a search (``scope.checked``, with the
    fingerprint that checks their vectors too); None for another scope or with POSTINGS_IN_PROCESS off."""
    if not (hits_sql is _MESSAGE_HITS_SQL and scope.postings is not None and scope.customer_id and POSTINGS_IN_PROCESS):
        return None
    if scope.checked is None:
        scope.checked = postings.checked(scope.customer_id, query)
        scope.kept_words = scope.checked.rows
    return scope.checked if scope.checked.kept else None


# Python work of a search that reads no database, run beside the model's run of its query (_embedded_beside).
_beside_pool: tuple[int, ThreadPoolExecutor] | None = None  # (the process it was made in, the pool)
_beside_busy = 0  # how many of its threads are taken: when all are, a search does both halves on its own thread


def _embedded_beside(query: str, work: Callable[[], T]) -> tuple[tuple[str, Future[list[float]]] | None, T]:
    """The query embedded on this thread while ``work`` (Python that reads no database) runs on a thread of its own:
    (what ``_query_vector_start`` would give, already done; ``work()``).

    The query is tokenised before ``work`` starts and the model's run releases the GIL, so the two overlap. A model
    run on a worker thread beside Python on this one waited for this thread's GIL before it could start: a query
    took 4.7 ms instead of 2.7 beside 1.5 ms of Python (docs/performance.md, session 12)."""
    global _beside_pool, _beside_busy
    try:
        embedder = embedder_get()
        finish = query_embed_prepare(query, embedder=embedder)
    except EmbeddingError:
        logger.warning("no embedding backend; searching by full text only", exc_info=True)
        return None, work()
    with _workers_lock:
        if _beside_pool is None or _beside_pool[0] != os.getpid():  # a forked child makes its own threads
            _beside_pool = (os.getpid(), ThreadPoolExecutor(CONCURRENT_WORKERS, thread_name_prefix="search-beside"))
            _beside_busy = 0
        pool = _beside_pool[1]
        free = _beside_busy < CONCURRENT_WORKERS
        _beside_busy += free
    # With every thread taken by other searches, waiting for one would cost more than the overlap gains.
    job = pool.submit(_beside_run, work) if free else None
    done: Future[list[float]] = Future()
    try:
        done.set_result(finish())
    except EmbeddingError as exc:  # _query_vector_wait logs it; the search goes on by full text
        done.set_exception(exc)
    return (embedder.name, done), job.result() if job is not None else work()


def _beside_run(work: Callable[[], T]) -> T:
    global _beside_busy
    try:
        return work()
    finally:
        with _workers_lock:
            _beside_busy -= 1


def _or_tsquery(query: str) -> str | None:
    """The query's stemmed words OR-ed, as tsquery text ('refund' | 'router'); None when it has none."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT string_agg(DISTINCT quote_literal(lexeme), ' | ') "
            "FROM unnest(tsvector_to_array(to_tsvector('english', %s))) AS lexeme",
            [query],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def _message_doc() -> dict[str, str]:
    """The parts of _MESSAGE_HITS_SQL that follow AUTHOR_IN_TEXT and NEIGHBOUR_WEIGHT."""
    author_doc = "to_tsvector('english', a.author_name)" if AUTHOR_IN_TEXT else "''::tsvector"
    near = _MESSAGE_NEAR_SQL if NEIGHBOUR_WEIGHT else "SELECT id, lexeme, tf FROM body_postings WHERE false"
    return {"author_doc": author_doc, "near": near}


def _vector_ranking(
    *, scope: _Scope, model: str, vector: list[float], limit: int, vector_sql: str, distance: str
) -> list[int]:
    """Ids nearest to ``vector`` among the scope's rows embedded by ``model``."""
    literal = "[" + ",".join(f"{x:.7g}" for x in vector) + "]"
    sql = vector_sql.format(where=scope.sql_where)
    params = [model, *scope.params, literal, limit]
    exact_sql = f"{sql} ORDER BY ({distance}) + 0 LIMIT %s"
    if scope.smoothed_vector_sql and VECTOR_NEIGHBOUR_WEIGHT:
        smoothed = scope.smoothed_vector_sql.format(where=scope.sql_where)
        return _fetch_ids(smoothed, [VECTOR_NEIGHBOUR_WEIGHT, literal, model, *scope.params, limit])
    if scope.exact:
        # "+ 0" keeps the planner off the HNSW index: one customer's rows are few, so exact is fast and complete.
        return _fetch_ids(exact_sql, params)
    return [row[0] for row in _nearest_rows(sql, distance, params, limit)]


# A message's similarity is raised by its closest neighbouring turn's (the exact scan computes them all
# anyway): the answer to a question often sits one turn away from the words that match it.
VECTOR_NEIGHBOUR_WEIGHT = 0.3
# The embedding's own customer column (kept equal to its message's, merges included) lets PostgreSQL read only that
# customer's embeddings through their index, where the join alone read the organisation's. OFFSET 0 computes each
# similarity before the window's sort, which then sorts small rows instead of rows carrying their 1.5 kB vector.
_MESSAGE_SIMILARITIES_SQL = (
    "SELECT m.id, m.ticket_id, m.created_at, 1 - (e.embedding <=> %s::vector) AS sim "
    "FROM memory_messageembedding e JOIN tickets_ticketmessage m "
    "ON m.id = e.message_id AND m.customer_id = e.customer_id WHERE e.model = %s AND {where} OFFSET 0"
)
_MESSAGE_SMOOTHED_VECTOR_SQL = """
SELECT id FROM (
    SELECT id, sim + %s * greatest(coalesce(lag(sim) OVER w, 0), coalesce(lead(sim) OVER w, 0)) AS score
    FROM ({similarities}) similarities
    WINDOW w AS (PARTITION BY ticket_id ORDER BY created_at, id)
) smoothed ORDER BY score DESC, id DESC LIMIT %s
""".replace("{similarities}", _MESSAGE_SIMILARITIES_SQL)


def _nearest_rows(sql: str, distance: str, params: list[Any], limit: int) -> list[tuple[Any, ...]]:
    """``sql``'s rows nearest first, at most ``limit``: by the HNSW index, once more with a list sized by the share
    of it the filter kept when that was too few, else exactly (complete, and as slow as the scope is large)."""
    ef_search = min(max(HNSW_EF_SEARCH_MIN, HNSW_EF_SEARCH_FACTOR * limit), HNSW_EF_SEARCH_MAX)
    rows = _hnsw_rows(f"{sql} ORDER BY {distance} LIMIT %s", params, ef_search)
    if 0 < len(rows) < limit and ef_search < HNSW_EF_SEARCH_MAX:
        needed = math.ceil(ef_search * limit / len(rows) * HNSW_RETRY_MARGIN)
        if needed <= HNSW_EF_SEARCH_MAX:
            rows = _hnsw_rows(f"{sql} ORDER BY {distance} LIMIT %s", params, needed)
    if len(rows) < limit:
        with connection.cursor() as cursor:
            cursor.execute(f"{sql} ORDER BY ({distance}) + 0 LIMIT %s", params)
            rows = cursor.fetchall()
    return rows


def _hnsw_rows(sql: str, params: list[Any], ef_search: int) -> list[tuple[Any, ...]]:
    """``sql`` with the HNSW candidate list at ``ef_search``, for this statement's transaction only."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL hnsw.ef_search = {int(ef_search)}")
        cursor.execute(sql, params)
        return cursor.fetchall()


def _fetch_ids(sql: str, params: list[Any]) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


# ----------------------------------------------------------------------------------------------
# Learned ranking (docs/recall.md, steps 4 to 7)
#
# Instead of RRF followed by hand-set preferences, every candidate (the union of the best CANDIDATE rows of
# each ranking) gets one linear score over seventeen features read from the rankings and the facts query:
#   text      BM25 score / the query's best BM25 score (0: no query word, itself or by a neighbour)
#   meaning   cosine similarity / the best similarity among the candidates
#   near      the best similarity of its previous or next turn (messages; 0 for passages)
#   place     RRF_K / (RRF_K + its place in the vector ranking) (0: not in it)
#   asks      its text ends with "?"
#   reply     it follows a candidate that asks: RRF_K x that question's RRF score
#   support   RRF_K x the RRF scores of the best SESSION_TOP other candidates of its conversation
#   dated     it was written in a period the query names (or DATE_AFTER_DAYS after)
#   named     its author is named by the query (named_authors)
#   words     log(1 + its number of words)
#   opens     it is the first turn of its conversation
#   timed, when timed, peer text, peer meaning: step 5, listed with their weights below
#   unnamed: step 6, below
#   sentence: step 7, below (one more statement: the candidates' best sentences)
# (RRF score: TEXT_WEIGHT / (RRF_K + text place) + VECTOR_WEIGHT / (RRF_K + vector place).)
# The weights were fitted on LoCoMo's tune half only (conversations 1-5, messages): a softmax loss over each
# question's candidates (the evidence turns share the probability), L2 30 on standardised features; the L2, the
# feature set (the text place feature was dropped) and LEARNED_CANDIDATES chosen by leave-one-conversation-out on
# tune. Confirmed on validate (recall@10 0.771 -> 0.808) and on archival passages with the same weights (0.724 ->
# 0.776); docs/recall.md, step 4. Steps 5 to 7 added six features and refitted all seventeen weights the same way.
LEARNED_RANKING = True
LEARNED_TEXT = 2.75
LEARNED_MEANING = 0.91
LEARNED_NEAR = 1.24
LEARNED_PLACE = -0.02
LEARNED_ASKS = -0.57
LEARNED_REPLY = 1.22
LEARNED_SUPPORT = 0.30
LEARNED_DATED = 4.19
LEARNED_NAMED = 1.97
LEARNED_WORDS = 0.35
LEARNED_OPENS = 0.84
# Step 5 (docs/recall.md), refitted with the eleven above on tune (softmax per question, L2 30):
#   timed        its text states a time relative to when it was written (states_time: "yesterday", "last week")
#   when timed   the same, when the query asks when (_ASKS_WHEN)
#   peer text    the best text feature among the other candidates of its conversation
#   peer meaning the best meaning feature among the other candidates of its conversation
LEARNED_TIMED = 0.34
LEARNED_WHEN_TIMED = 1.39
LEARNED_PEER_TEXT = 1.51
LEARNED_PEER_MEANING = 0.97
# Step 6 (docs/recall.md), refitted with the fifteen above on tune (softmax per question, L2 30):
#   unnamed      cosine to the query's vector less UNNAMED_NAME_WEIGHT x the mean vector of the words of the
#                customer's people's names that it mentions (memory/query_parts.py), at unit length / the best such
#                cosine among the candidates; the meaning feature when the query names no one. A turn is embedded as
#                "<author>: <text>": a named query is near everything its person wrote, the unnamed one nearer the
#                turn about its topic.
LEARNED_UNNAMED = 0.71
# Step 7 (docs/recall.md), refitted with the sixteen above on tune (softmax per question, L2 30):
#   sentence     the best of its unnamed similarity and its sentences' (memory/sentences.py: each sentence of a turn of
#                two or more embedded alone), over the best such value among the candidates: what a long turn says
#                about the topic, without the pleasantries around it. Leave-one-conversation-out on tune, recall@10
#                (all / categories 1-3): 0.8209 / 0.7015 -> 0.8259 / 0.7097; validate 0.818 / 0.658 -> 0.828 / 0.670.
LEARNED_SENTENCE = 2.15
# Step 8 (docs/recall.md): one customer's message search adds a hidden layer of 16 tanh units over the same seventeen
# features, and its linear weights are LEARNED_MESSAGE_WEIGHTS (in the order of _learned_weights), fitted with it:
#   score = sum(weight x feature) + sum over units of output x tanh(bias + sum(unit weight x feature)),
# each unit (bias, its seventeen weights, output). Same loss and data as steps 4-7 (tune only, messages, softmax per
# question; L2 30 on the linear and 10 on the hidden weights, on standardised features, folded back to raw features
# here); 16 units and L2 10 chosen by leave-one-conversation-out on tune (recall@10 all / categories 1-3: 0.8251 /
# 0.7089 linear, 0.8361 / 0.7305 with the layer). What a sum cannot say: a feature that counts only when another is
# high or low. Passage search does not use this layer: passages read no neighbour similarity (near is 0), which the
# layer was not fitted for (archival validate fell with it: 0.815 -> 0.805); one customer's passages have their own
# (step 9, below), organisation-wide passage search keeps the step-7 linear score (LEARNED_* above).
# An empty LEARNED_HIDDEN gives messages the step-7 score too.
LEARNED_MESSAGE_WEIGHTS = (
    0.66,  # text
    0.31,  # meaning
    0.42,  # near
    0.15,  # place
    -0.06,  # asks
    0.99,  # reply
    0.06,  # support
    1.18,  # dated
    0.42,  # named
    0.10,  # words
    0.10,  # opens
    -0.02,  # timed
    0.39,  # when timed
    0.48,  # peer text
    0.31,  # peer meaning
    0.22,  # unnamed
    0.52,  # sentence
)
# fmt: off
LEARNED_HIDDEN: tuple[tuple[float, tuple[float, ...], float], ...] = (
    # (bias, (text, meaning, near, place, asks, reply, support, dated, named,
    #         words, opens, timed, when timed, peer text, peer meaning, unnamed, sentence), output)
    (-1.58, (-0.195, 0.391, 0.0936, 0.262, -0.127, 0.0103, 0.0171, 1.46, 0.492,
        0.0279, -0.413, -0.245, 0.28, 0.143, 0.541, 0.202, 0.616), 0.409),
    (-0.324, (-1.58, 0.546, -0.462, 0.0427, -0.261, 1.69, -0.222, 1.75, 0.533,
        0.176, -0.122, 0.271, 2.04, -0.00535, -1.24, 0.128, 0.279), 0.681),
    (1.59, (-0.376, -0.486, -0.414, -0.411, 0.153, 0.177, -0.0229, 0.00439, -0.22,
        0.0128, -0.294, -0.204, 0.978, -0.551, -0.631, -0.385, -0.512), -0.366),
    (-2.39, (0.324, 0.108, -0.367, 1.19, -0.498, 0.405, 0.031, 0.659, 0.772,
        0.151, -0.531, -0.0124, 0.278, -0.0924, 0.599, -0.12, 0.664), 0.547),
    (2.84, (-1.66, -0.401, -1.64, 2.92, -0.204, -1.83, 0.028, 0.131, -0.302,
        0.275, -0.445, -0.533, -0.558, -0.613, -1.29, 0.324, -0.168), -0.752),
    (3.22, (-1.71, 0.227, 0.565, -0.236, 0.288, -0.281, -0.262, -0.955, -0.658,
        -0.118, -0.675, 0.442, 0.266, -0.73, -0.462, 0.049, -0.273), -0.614),
    (2.4, (-0.543, -0.579, 2.1, -0.0917, -0.000238, -0.268, 0.0679, -1.18, -0.189,
        -0.662, -0.281, -0.296, 0.723, 0.736, 1.78, -0.921, -0.644), -0.688),
    (-1.54, (0.331, 0.56, 0.439, 0.453, -0.128, -0.25, 0.0198, 0.0562, 0.224,
        -0.0404, 0.267, 0.169, -0.981, 0.557, 0.658, 0.41, 0.515), 0.372),
    (-2.45, (2.84, -0.0681, 0.053, -1.25, 0.21, -0.572, -0.0437, 0.894, 0.352,
        0.124, 0.343, -0.147, 0.291, -0.493, -0.187, 0.115, 0.124), 0.638),
    (-5.51, (0.27, 0.186, 2.14, 1.32, 0.0246, -0.182, 0.405, 1.2, 0.614,
        0.292, -0.435, 0.19, 0.739, 0.888, 0.264, -0.259, 0.122), 0.665),
    (1.7, (-0.394, -0.374, -0.4, -0.354, 0.182, 0.0757, -0.0247, 0.0251, -0.243,
        -0.0193, -0.334, -0.246, 0.929, -0.547, -0.594, -0.344, -0.518), -0.363),
    (-0.382, (0.149, 0.173, -1.98, -0.155, -0.291, -1.44, -0.099, 0.641, 0.155,
        0.158, 0.249, 0.436, 1.38, -0.524, -0.898, 0.488, 0.628), 0.525),
    (3.19, (0.108, 0.939, -0.965, -0.598, 0.412, -1.47, -0.17, 0.81, 0.447,
        -0.714, -0.406, -0.86, -0.0119, 0.198, 0.102, -0.178, 0.448), 0.651),
    (2.02, (-0.232, 0.526, -1.26, -0.371, 0.442, -1.3, 0.0139, 0.161, -0.109,
        -0.455, -0.354, -0.764, -0.211, -0.0448, -0.104, -0.161, -0.474), -0.485),
    (-2.14, (0.778, -0.349, 0.491, 0.0355, -0.31, -3.18, 0.149, -0.273, 0.208,
        0.0457, 0.222, 0.975, -0.531, 0.0844, 0.456, 0.258, 0.99), 0.641),
    (1.64, (1.06, 0.738, -1.56, 0.0866, 0.0565, -0.339, -0.0994, -0.781, -0.433,
        0.177, -0.513, 0.486, -0.286, -0.881, -1.56, 0.918, 0.178), -0.609),
)
# fmt: on
# Step 9 (docs/recall.md): one customer's passage search adds its own hidden layer, the same form as step 8's (16 tanh
# units over the same seventeen features, linear weights LEARNED_PASSAGE_WEIGHTS fitted with it), fitted on the
# archival passages of tune only (softmax per question; L2 30 on the linear and 10 on the hidden weights, standardised,
# folded back to raw features here). Passages read no neighbour similarity: near is always 0 for them, and its weights
# here are 0. Chosen by leave-one-conversation-out on tune (archival recall@10 all / categories 1-3: 0.8013 / 0.7145
# linear refitted, 0.8145 / 0.7176 with the layer); validate 0.815 / 0.678 (step 7) -> 0.821 / 0.687.
# Organisation-wide passage search keeps the step-7 linear score (not measured: memory_eval asks one customer).
# An empty LEARNED_PASSAGE_HIDDEN gives one customer's passages the step-7 score too.
LEARNED_PASSAGE_WEIGHTS = (
    0.39,  # text
    0.24,  # meaning
    0.00,  # near
    0.40,  # place
    -0.02,  # asks
    1.77,  # reply
    0.10,  # support
    1.37,  # dated
    0.37,  # named
    0.07,  # words
    0.06,  # opens
    -0.07,  # timed
    0.29,  # when timed
    0.38,  # peer text
    0.10,  # peer meaning
    0.22,  # unnamed
    0.54,  # sentence
)
# fmt: off
LEARNED_PASSAGE_HIDDEN: tuple[tuple[float, tuple[float, ...], float], ...] = (
    # (bias, (text, meaning, near, place, asks, reply, support, dated, named,
    #         words, opens, timed, when timed, peer text, peer meaning, unnamed, sentence), output)
    (-3.11, (1.91, -0.15, 0.0, -0.0102, 0.0994, -0.268, 0.193, 1.6, 0.22,
        0.158, 0.583, -0.0879, 0.205, -0.194, -0.0694, 0.283, 0.498), 0.46),
    (-1.06, (-0.681, 0.4, 0.0, 0.0973, -0.213, 1.56, -0.312, 1.36, 0.664,
        0.396, -0.299, 0.327, 2.07, -0.27, -1.37, 0.0841, 0.149), 0.656),
    (2.59, (-0.513, -0.107, 0.0, -1.12, 0.512, -0.567, -0.0906, -0.575, -0.904,
        -0.115, 0.446, -0.0166, -0.22, 0.105, -0.523, 0.0558, -0.713), -0.576),
    (-2.71, (-0.172, -0.597, 0.0, 0.0628, -0.497, 3.02, 0.218, -0.565, -0.149,
        0.599, 0.575, 0.817, 0.284, 0.0514, 0.775, 0.459, 0.74), 0.653),
    (2.59, (-2.52, -0.126, 0.0, 0.845, -0.309, 0.134, -0.00684, 0.0294, -0.197,
        -0.185, 0.702, 0.0354, -0.294, 0.951, 0.499, -0.39, -0.131), -0.568),
    (2.57, (-1.43, 0.307, 0.0, -0.197, 0.319, -0.736, -0.052, -0.489, -0.742,
        -0.156, -0.0876, 0.602, -0.273, -0.489, -0.251, 0.04, -0.279), -0.507),
    (1.48, (-1.55, 0.724, 0.0, 2.09, 0.00673, 1.92, -0.145, -1.18, -0.303,
        0.278, -0.861, -0.236, -1.21, 0.157, -1.06, -0.0434, -0.559), -0.608),
    (-1.28, (0.7, 0.316, 0.0, 0.14, -0.105, -0.208, 0.0311, 0.0294, 0.233,
        -0.0294, 0.579, 0.0795, -1.13, 0.891, 0.254, 0.391, 0.643), 0.439),
    (-1.4, (2.89, -0.343, 0.0, -0.707, 0.203, -0.17, 0.0143, 0.381, 0.351,
        0.115, 0.178, -0.157, 0.533, -0.965, -0.645, -0.243, -0.236), 0.616),
    (-0.908, (-1.63, -0.171, 0.0, -0.721, -0.108, 0.438, 0.0422, 1.25, 0.376,
        0.0485, 0.0301, 0.158, -0.315, 0.474, 0.509, -0.156, 0.403), 0.414),
    (3.28, (-1.1, 0.127, 0.0, -0.627, 0.0192, 0.155, -0.336, -0.953, -0.555,
        -0.114, -0.285, -0.00781, -0.026, -0.512, -0.518, 0.21, -0.284), -0.463),
    (-2.16, (0.578, -0.171, 0.0, 0.596, -0.192, -3.7, 0.189, 0.155, 0.303,
        -0.0545, 0.0561, 0.778, -0.397, 0.0373, 0.652, 0.461, 1.0), 0.573),
    (-0.111, (-0.473, 1.03, 0.0, 0.0164, 0.204, -0.262, 0.0615, 1.43, 0.575,
        -0.331, -0.613, -0.297, 0.247, -0.109, 0.618, 0.388, 0.502), 0.508),
    (-1.29, (0.7, 0.322, 0.0, 0.141, -0.109, -0.193, 0.0306, 0.013, 0.228,
        -0.0276, 0.582, 0.0875, -1.14, 0.9, 0.259, 0.394, 0.646), 0.441),
    (-1.29, (0.314, 0.493, 0.0, 0.72, -0.158, -1.71, -0.19, 0.531, 0.176,
        0.276, 0.299, 0.678, -0.54, -0.692, -1.68, 0.452, 0.312), 0.497),
    (1.9, (1.3, 0.776, 0.0, -0.568, 0.0918, -0.125, -0.377, -0.0787, -0.0979,
        0.22, 0.25, 0.486, -1.05, -1.55, -1.34, 0.6, -0.0987), -0.679),
)
# fmt: on
# Chosen on tune by leave-one-conversation-out (0.5 / 0.7 / 1.0: recall@10 0.8212 / 0.8234 / 0.8228; embedding the
# query again without the names: 0.8219, at the cost of a second model run per search).
UNNAMED_NAME_WEIGHT = 0.7
# Each ranking contributes its best LEARNED_CANDIDATES rows (or the page's limit, when larger), whatever the page
# size: the learned score uses deeper lists well (tune, leave-one-out recall@10 at 50 / 75 / 100 / 150 / 200 / 300
# rows: 0.812 / 0.813 / 0.816 / 0.820 / 0.822 / 0.822), and page 1 of 10 is then the first 10 of a page of 25.
LEARNED_CANDIDATES = 200

# Similarities (own, best neighbour's) of the nearest rows by smoothed similarity and of the given rows (the text
# ranking's candidates), nearest first: one exact scan, as the smoothed ranking already reads every row.
# The last column is the similarity to the query without names (step 6; NULL when no second vector is given).
_MESSAGE_VECTOR_FEATURES_SQL = """
SELECT id, sim, near, unnamed FROM (
    SELECT id, sim, near, unnamed, row_number() OVER (ORDER BY sim + %s * near DESC, id DESC) AS place FROM (
        SELECT id, sim, greatest(coalesce(lag(sim) OVER w, 0), coalesce(lead(sim) OVER w, 0)) AS near, unnamed
        FROM ({similarities}) similarities
        WINDOW w AS (PARTITION BY ticket_id ORDER BY created_at, id)
    ) smoothed
) placed WHERE place <= %s OR id = ANY(%s) ORDER BY place
""".replace(
    "{similarities}",
    "SELECT m.id, m.ticket_id, m.created_at, 1 - (e.embedding <=> %s::vector) AS sim, "
    "1 - (e.embedding <=> %s::vector) AS unnamed "
    "FROM memory_messageembedding e JOIN tickets_ticketmessage m "
    "ON m.id = e.message_id AND m.customer_id = e.customer_id WHERE e.model = %s AND {where} OFFSET 0",
)
# Each distance computed once, before the sort (OFFSET 0), so the sort does not carry the vectors.
_PASSAGE_VECTOR_FEATURES_SQL = """
SELECT id, 1 - distance, 0.0, unnamed FROM (
    SELECT id, distance, unnamed, row_number() OVER (ORDER BY distance, id DESC) AS place FROM (
        SELECT m.id, m.embedding <=> %s::vector AS distance, 1 - (m.embedding <=> %s::vector) AS unnamed
        FROM memory_archivalpassage m WHERE m.embedding_model = %s AND {where} OFFSET 0
    ) distances
) placed WHERE place <= %s OR id = ANY(%s) ORDER BY place
"""


_SIMILARITIES_SQL = "SELECT m.id, 1 - ({distance}) FROM {table} WHERE m.embedding_model = %s AND m.id = ANY(%s)"


@dataclass(slots=True)
class _Candidate:
    text: float = 0.0  # BM25
    text_place: int = 0  # 0: not in the text ranking
    sim: float | None = None  # None: not embedded (or no query vector)
    near: float = 0.0
    vector_place: int = 0
    unnamed: float | None = None  # similarity to the query without names (None: the query names no one)
    sentence: float | None = None  # its best sentence's similarity to the query without names (None: no sentences)

    @property
    def rrf(self) -> float:
        score = TEXT_WEIGHT / (RRF_K + self.text_place) if self.text_place else 0.0
        return score + (VECTOR_WEIGHT / (RRF_K + self.vector_place) if self.vector_place else 0.0)


def _learned_rank(
    *, scope: _Scope, query: str, limit: int, vector_sql: str, distance: str, hits_sql: str, facts_sql: str
) -> list[tuple[int, float]]:
    """Candidates of both rankings scored by the learned linear ranker, best first, duplicates dropped."""
    # One customer's kept words (and vectors) are checked first: the statement took twice as long beside the model
    # run (docs/performance.md, session 11), which then overlaps the full-text scoring instead.
    checked = _words_checked(scope, query, hits_sql)
    text_scores: list[tuple[int, float]] | None = None
    if checked is not None and TEXT_WEIGHT > 0:
        # Kept words are scored in Python, which holds the GIL: on a thread of its own, while this thread runs the
        # model on the query. Else the statement ranks by full text here while a worker thread embeds the query.
        pending, text_scores = _embedded_beside(
            query, functools.partial(_text_scores, scope=scope, query=query, limit=MAX_RESULTS, hits_sql=hits_sql)
        )
    else:
        pending = _query_vector_start(query)
    depth = min(max(limit, LEARNED_CANDIDATES), MAX_RESULTS)
    # One customer's vector features do not depend on the text ranking when every row's are read: they are read on
    # a second connection, after the query embedding (and its people's names), while this thread's connection ranks
    # by full text.
    vector_job = None
    pending_names: list[tuple[str, Future[list[float]]]] | None = None
    # The organisation's passages: the nearest rows' (HNSW) search likewise runs on the second connection while
    # this one ranks by full text; the similarities of text candidates outside them are read here afterwards.
    nearest_job = None
    # One customer's messages whose vectors this process keeps: checked here (a fingerprint) while the query is
    # embedded, then compared in memory after the text ranking; no second connection, no thread but the model's.
    vectors = _kept_vectors(scope, pending[0]) if pending is not None and VECTOR_WEIGHT > 0 else None
    second_connection = vectors is None and _concurrent_reads_safe()
    if pending is not None and VECTOR_WEIGHT > 0 and scope.vector_features_sql and second_connection:
        vector_job = _worker_submit(_every_vector_feature, scope=scope, query=query, pending=pending, depth=depth)
    elif pending is not None and vectors is None:
        pending_names = _named_vectors_start(scope, query)
        if VECTOR_WEIGHT > 0 and _concurrent_reads_safe():
            nearest_job = _worker_submit(
                _nearest_when_embedded,
                scope=scope,
                pending=pending,
                limit=depth,
                vector_sql=vector_sql,
                distance=distance,
            )
    candidates: dict[int, _Candidate] = {}
    if TEXT_WEIGHT > 0:
        # Every match's score (the SQL scores them all anyway): a vector candidate's words count too.
        if text_scores is None:
            text_scores = _text_scores(scope=scope, query=query, limit=MAX_RESULTS, hits_sql=hits_sql)
        # Matches past ``depth`` count only for a vector candidate: their scores wait for the vector ranking.
        candidates = {
            pk: _Candidate(text=score, text_place=place) for place, (pk, score) in enumerate(text_scores[:depth], 1)
        }
        later_text = dict(text_scores[depth:])
    else:
        later_text = {}
    text_ids = list(candidates)
    rows: list[tuple[int, float, float, float | None]] | None = None
    sentence_target: list[float] | None = None  # the vector a candidate's sentences are compared to (step 7)
    kept: kept_vectors.Features | None = None  # the features of every row, from the vectors kept in the process
    if vector_job is not None:
        try:
            every, sentence_target = vector_job.result()
        except DatabaseError:  # the second connection failed (none left, the server restarted): read them here
            logger.warning("vector features on a second connection failed; reading them on this one", exc_info=True)
            vector_job = None
        else:
            wanted = set(text_ids)
            if every is not None and len(every) >= CONCURRENT_VECTOR_ROWS and not wanted <= {row[0] for row in every}:
                vector_job = None  # a large scope cut short with wanted rows past the cut: the statement that has them
            elif every is not None:  # what the statement's own filter keeps: the nearest ``depth``, then the wanted
                rows = [row for place, row in enumerate(every, 1) if place <= depth or row[0] in wanted]
    found = _query_vector_wait(pending) if vector_job is None else None
    if found is not None and VECTOR_WEIGHT > 0:
        model, vector = found
        if pending_names is None:  # the second connection's read was not used: the names are read here
            pending_names = _named_vectors_start(scope, query)
        unnamed_vector = _unnamed_vector(model, vector, pending_names)
        sentence_target = unnamed_vector or vector
        nearest = _worker_result(nearest_job, "nearest rows")
        kept = _kept_features(scope, vector, unnamed_vector, vectors) if vectors is not None else None
        if kept is not None:
            rows = kept.rows(depth, text_ids)
        else:
            rows = _vector_features(
                scope=scope,
                model=model,
                vector=vector,
                limit=depth,
                wanted=text_ids,
                vector_sql=vector_sql,
                distance=distance,
                unnamed_vector=unnamed_vector,
                nearest=nearest,
            )
    if rows is not None:
        for place, (pk, sim, near, unnamed_sim) in enumerate(rows, 1):
            candidate = candidates.get(pk)
            if candidate is None:
                candidate = candidates[pk] = _Candidate(text=later_text.get(pk, 0.0))
            candidate.sim, candidate.near, candidate.unnamed = sim, near, unnamed_sim
            candidate.vector_place = place if place <= depth else 0
    pool = {pk: c for pk, c in candidates.items() if c.text_place or c.vector_place}
    if not pool:
        return []
    sentences_job = None
    model = pending[0] if pending is not None else ""
    # (With the kept vectors, the sentences' similarities came with their features.)
    if (
        kept is None
        and LEARNED_SENTENCE
        and sentence_target is not None
        and scope.sentences_sql
        and _concurrent_reads_safe()
    ):
        # Read on the second connection while this one reads the facts (step 7's cost, mostly hidden).
        sentences_job = _worker_submit(
            _sentence_similarities, scope=scope, ids=list(pool), model=model, target=sentence_target
        )
    facts = _facts(facts_sql, list(pool), kept=scope.kept_words)
    pool = {pk: c for pk, c in pool.items() if pk in facts}
    if LEARNED_SENTENCE and sentence_target is not None:
        sentence_sims = kept.sentences(list(pool)) if kept is not None else _worker_result(sentences_job, "sentences")
        if sentence_sims is None:
            sentence_sims = _sentence_similarities(scope=scope, ids=list(pool), model=model, target=sentence_target)
        for pk, sim in sentence_sims.items():
            if pk in pool:
                pool[pk].sentence = sim
    scores = _learned_scores(
        pool,
        facts,
        query=query,
        neighbours=bool(scope.smoothed_vector_sql),
        passages=facts_sql == _PASSAGE_FACTS_SQL and scope.customer_id is not None,
    )
    ranked = sorted(scores.items(), key=lambda item: (-item[1], -item[0]))
    return _distinct(ranked, facts) if DEDUPLICATE else ranked


# Reads that run on a second connection (one worker thread each, with its own Django connection, kept open like a
# request thread's). Only outside a transaction: a second connection cannot see what this one has not committed.
# Only with SUPPORTMEM_SEARCH_CONCURRENT_READS (on by default) and CONCURRENT_READS; else every statement runs on
# the caller's connection.
CONCURRENT_READS = True
CONCURRENT_WORKERS = 4
_workers: tuple[int, ThreadPoolExecutor] | None = None  # (the process it was made in, the pool)
_workers_lock = threading.Lock()
_worker_connections: list[Any] = []  # each worker thread's Django connection, closed by search_workers_close


def _concurrent_reads_safe() -> bool:
    """Whether a statement on another connection sees what this thread's connection sees: it is in autocommit."""
    if not (CONCURRENT_READS and settings.SUPPORTMEM_SEARCH_CONCURRENT_READS):
        return False
    return not connection.in_atomic_block and connection.get_autocommit()


def _worker_submit(function: Callable[..., T], /, **kwargs: Any) -> Future[T]:
    global _workers
    with _workers_lock:
        if _workers is None or _workers[0] != os.getpid():  # a forked child (gunicorn, Celery) makes its own threads
            _workers = (os.getpid(), ThreadPoolExecutor(CONCURRENT_WORKERS, thread_name_prefix="search-read"))
        pool = _workers[1]
    return pool.submit(_worker_run, function, kwargs)


def _worker_result(job: Future[T] | None, what: str) -> T | None:
    """What a second connection read, or None when nothing was handed to it or it failed (none left, the server
    restarted): the caller then reads it on its own connection."""
    if job is None:
        return None
    try:
        return job.result()
    except DatabaseError:
        logger.warning("%s on a second connection failed; reading them on this one", what, exc_info=True)
        return None


def _worker_run(function: Callable[..., T], kwargs: dict[str, Any]) -> T:
    """On a worker thread: its connection checked as at the start of a request, then ``function``."""
    db = connections[DEFAULT_DB_ALIAS]
    if not getattr(db, "_search_worker", False):
        db._search_worker = True  # type: ignore[attr-defined]
        with _workers_lock:
            _worker_connections.append(db)
    # Closed when it saw an error or outlived CONN_MAX_AGE; with CONN_HEALTH_CHECKS, an idle one is checked first.
    db.close_if_unusable_or_obsolete()
    return function(**kwargs)


def search_workers_close() -> None:
    """Stop the worker threads and close their connections (tests call it before the test database is dropped)."""
    global _workers, _beside_pool
    with _workers_lock:
        workers, _workers = _workers, None
        beside_pool, _beside_pool = _beside_pool, None
        opened = list(_worker_connections)
        _worker_connections.clear()
    for pool in (workers, beside_pool):
        if pool is not None:
            pool[1].shutdown(wait=True)
    for db in opened:  # the threads have ended: nothing uses these connections any more
        db.inc_thread_sharing()
        try:
            db.close()
        finally:
            db.dec_thread_sharing()


def _every_vector_feature(
    *, scope: _Scope, query: str, pending: tuple[str, Future[list[float]]], depth: int
) -> tuple[list[tuple[int, float, float, float | None]] | None, list[float] | None]:
    """On a worker thread: ``_vector_features`` of the scope's nearest ``max(depth, CONCURRENT_VECTOR_ROWS)`` rows,
    nearest first, whatever the text ranking finds, and the query's vector without names (the query's own when it
    names no one), which the sentences are compared to (step 7); (None, None): no query vector."""
    pending_names = _named_vectors_start(scope, query)
    found = _query_vector_wait(pending)
    if found is None:
        return None, None
    model, vector = found
    unnamed_vector = _unnamed_vector(model, vector, pending_names)
    rows = _vector_features(
        scope=scope,
        model=model,
        vector=vector,
        limit=max(depth, CONCURRENT_VECTOR_ROWS),
        wanted=[],
        vector_sql="",
        distance="",
        unnamed_vector=unnamed_vector,
    )
    return rows, unnamed_vector or vector


def _kept_vectors(scope: _Scope, model: str) -> kept_vectors.Vectors | None:
    """One customer's message vectors by ``model`` kept in the process (read once, checked by a fingerprint); None
    for another scope, a customer without messages, or with VECTORS_IN_PROCESS off."""
    if not (VECTORS_IN_PROCESS and scope.customer_id and scope.postings is not None):
        return None
    if scope.vector_features_sql is not _MESSAGE_VECTOR_FEATURES_SQL:
        return None
    if scope.checked is not None and not scope.checked.kept:
        return None  # more messages than a process keeps: their vectors are more still
    fingerprint = scope.checked.fingerprint if scope.checked is not None else None
    return kept_vectors.checked(scope.customer_id, model, fingerprint)


def _kept_features(
    scope: _Scope, vector: list[float], unnamed_vector: list[float] | None, vectors: kept_vectors.Vectors
) -> kept_vectors.Features | None:
    """One customer's messages' vector features and best sentences from their vectors kept in the process, as this
    search checked them (``_kept_vectors``)."""
    if scope.postings is None:
        return None
    return vectors.features(
        vector=vector,
        unnamed=unnamed_vector,
        sentence_target=(unnamed_vector or vector) if LEARNED_SENTENCE else None,
        neighbour_weight=VECTOR_NEIGHBOUR_WEIGHT,
        rows_filter=scope.postings,
    )


# The second connection reads at most this many nearest rows (a customer of a few thousand messages: all of them). When
# a text candidate is past them, the features are read again on the caller's connection, with the wanted rows.
CONCURRENT_VECTOR_ROWS = 2000


def _learned_scores(
    pool: dict[int, _Candidate],
    facts: dict[int, tuple[Any, ...]],
    *,
    query: str,
    neighbours: bool = False,
    passages: bool = False,
) -> dict[int, float]:
    """The learned score of each candidate: the weighted sum of the features listed above LEARNED_RANKING; with
    ``neighbours`` (the search read each candidate's neighbours' similarity: one customer's messages) and a
    LEARNED_HIDDEN layer, LEARNED_MESSAGE_WEIGHTS' sum plus the layer's units over the same features (step 8); with
    ``passages`` (one customer's passage search) and a LEARNED_PASSAGE_HIDDEN layer, LEARNED_PASSAGE_WEIGHTS' sum
    plus that layer's units (step 9)."""
    best_text = max((c.text for c in pool.values() if c.text_place), default=0.0) or 1.0
    best_sim = max((c.sim for c in pool.values() if c.sim is not None), default=0.0)
    best_sim = best_sim if best_sim > 0 else 1.0
    unnamed_sims = {pk: c.sim if c.unnamed is None else c.unnamed for pk, c in pool.items()}
    best_unnamed = max((sim for sim in unnamed_sims.values() if sim is not None), default=0.0)
    best_unnamed = best_unnamed if best_unnamed > 0 else 1.0
    sentence = _best_sentence(unnamed_sims, {pk: c.sentence for pk, c in pool.items() if c.sentence is not None})
    rrf = {pk: c.rrf for pk, c in pool.items()}
    replies: dict[int, float] = {}
    by_turn = {facts[pk][5]: pk for pk in pool if facts[pk][5] is not None}
    by_ticket: dict[Any, list[float]] = {}
    for pk in pool:
        by_ticket.setdefault(facts[pk][0], []).append(rrf[pk])
        reply = by_turn.get(facts[pk][6]) if facts[pk][4] else None
        if reply is not None:
            replies[reply] = rrf[pk]
    periods = query_periods(query)
    after = timedelta(days=DATE_AFTER_DAYS)
    dated = {pk for pk in pool if any(p.contains(facts[pk][1], after=after) for p in periods)} if periods else set()
    named = named_authors(query, {facts[pk][3] for pk in pool})
    when = asks_when(query)
    text = {pk: c.text / best_text for pk, c in pool.items()}
    meaning = {pk: (c.sim or 0.0) / best_sim for pk, c in pool.items()}
    peer_text = _best_of_others(text, facts)
    peer_meaning = _best_of_others(meaning, facts)
    tops = {ticket: sorted(values, reverse=True)[: SESSION_TOP + 1] for ticket, values in by_ticket.items()}
    ids = list(pool)
    rows = []
    for pk in ids:  # one row of LEARNED_FEATURES per candidate
        c = pool[pk]
        ticket, _, _, author, asks = facts[pk][:5]
        words, opens, body = facts[pk][7], facts[pk][8], facts[pk][9]
        timed = float(text_measures(body)[1])
        rows.append(
            (
                text[pk],
                meaning[pk],
                c.near,
                RRF_K / (RRF_K + c.vector_place) if c.vector_place else 0.0,
                float(bool(asks)),
                RRF_K * replies.get(pk, 0.0),
                RRF_K * _support(tops[ticket], rrf[pk]),
                float(pk in dated),
                float(author in named),
                math.log1p(words),
                float(bool(opens)),
                timed,
                timed if when else 0.0,
                peer_text[pk],
                peer_meaning[pk],
                (unnamed_sims[pk] or 0.0) / best_unnamed,
                sentence[pk],
            )
        )
    if not rows:
        return {}
    features = np.asarray(rows, dtype=np.float64)
    if neighbours and LEARNED_HIDDEN:
        linear, layer = LEARNED_MESSAGE_WEIGHTS, LEARNED_HIDDEN
    elif passages and not neighbours and LEARNED_PASSAGE_HIDDEN:
        linear, layer = LEARNED_PASSAGE_WEIGHTS, LEARNED_PASSAGE_HIDDEN
    else:
        return dict(zip(ids, (features @ np.array(_learned_weights())).tolist(), strict=True))
    weights, biases, outputs = _hidden_layer(layer)
    scores = features @ np.array(linear) + np.tanh(features @ weights.T + biases) @ outputs
    return dict(zip(ids, scores.tolist(), strict=True))


def _learned_weights() -> tuple[float, ...]:
    """The linear weights in LEARNED_FEATURES order (read per search: tests switch single weights off)."""
    return (
        LEARNED_TEXT,
        LEARNED_MEANING,
        LEARNED_NEAR,
        LEARNED_PLACE,
        LEARNED_ASKS,
        LEARNED_REPLY,
        LEARNED_SUPPORT,
        LEARNED_DATED,
        LEARNED_NAMED,
        LEARNED_WORDS,
        LEARNED_OPENS,
        LEARNED_TIMED,
        LEARNED_WHEN_TIMED,
        LEARNED_PEER_TEXT,
        LEARNED_PEER_MEANING,
        LEARNED_UNNAMED,
        LEARNED_SENTENCE,
    )


@functools.lru_cache(maxsize=4)
def _hidden_layer(units: tuple[tuple[float, tuple[float, ...], float], ...]) -> tuple[Any, Any, Any]:
    """A hidden layer (LEARNED_HIDDEN, LEARNED_PASSAGE_HIDDEN) as arrays: (units x features input weights, biases,
    output weights)."""
    return (
        np.array([unit[1] for unit in units], dtype=np.float64),
        np.array([unit[0] for unit in units], dtype=np.float64),
        np.array([unit[2] for unit in units], dtype=np.float64),
    )


def _best_sentence(unnamed_sims: dict[int, float | None], sentence_sims: dict[int, float]) -> dict[int, float]:
    """Each candidate's best of its own unnamed similarity and its sentences', over the best among the candidates
    (a turn of one sentence, or one embedded before sentences were, has only its own)."""
    best = {pk: max(sim or 0.0, sentence_sims.get(pk, -1.0)) for pk, sim in unnamed_sims.items()}
    top = max(best.values(), default=0.0)
    top = top if top > 0 else 1.0
    return {pk: value / top for pk, value in best.items()}


# The best similarity of each given row's sentences (memory/sentences.py) to the query without names (step 7): one
# probe per candidate of the sentence table's owner index, after the candidates are known.
_MESSAGE_SENTENCES_SQL = (
    "SELECT message_id, max(1 - (embedding <=> %s::vector)) FROM memory_sentenceembedding "
    "WHERE message_id = ANY(%s) AND model = %s GROUP BY message_id"
)
_PASSAGE_SENTENCES_SQL = (
    "SELECT passage_id, max(1 - (embedding <=> %s::vector)) FROM memory_sentenceembedding "
    "WHERE passage_id = ANY(%s) AND model = %s GROUP BY passage_id"
)


def _sentence_similarities(*, scope: _Scope, ids: list[int], model: str, target: list[float]) -> dict[int, float]:
    """The best similarity of each candidate's sentences (embedded by ``model``) to ``target``, the query's vector
    without names (the query's own when it names no one); {} for a scope that has no sentences."""
    if not scope.sentences_sql or not ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(scope.sentences_sql, [_vector_literal(target), ids, model])
        return {row[0]: float(row[1]) for row in cursor.fetchall()}


def _support(top: list[float], own: float) -> float:
    """The sum of the best SESSION_TOP scores of a candidate's conversation but its own, from ``top``: the
    conversation's best SESSION_TOP + 1 scores, best first. The same values summed in the same order as sorting all its
    peers' scores would give (one sort per conversation instead of one per candidate)."""
    if own in top:
        top = list(top)
        top.remove(own)
    return sum(top[:SESSION_TOP])


# A query asks when something happened ("When did Dana's router fail?", "What year did she move?", "how long ago").
_ASKS_WHEN = re.compile(
    r"^\s*(when|what (year|month|date|day|time|week)|how long|since when|which (year|month|day))\b|\bwhen\b", re.I
)


def asks_when(query: str) -> bool:
    """Whether the query asks for a time (the "when timed" feature of the learned ranking)."""
    return bool(_ASKS_WHEN.search(query))


def _best_of_others(values: dict[int, float], facts: dict[int, tuple[Any, ...]]) -> dict[int, float]:
    """For each candidate, the best value among the other candidates of its conversation (0 when it is alone)."""
    top: dict[Any, tuple[float, float]] = {}  # conversation: its best two values
    for pk, value in values.items():
        first, second = top.get(facts[pk][0], (-math.inf, -math.inf))
        top[facts[pk][0]] = (value, first) if value > first else (first, max(second, value))
    others = {}
    for pk, value in values.items():
        first, second = top[facts[pk][0]]
        best = second if value == first else first
        others[pk] = best if best > -math.inf else 0.0
    return others


def _vector_features(
    *,
    scope: _Scope,
    model: str,
    vector: list[float],
    limit: int,
    wanted: list[int],
    vector_sql: str,
    distance: str,
    unnamed_vector: list[float] | None = None,
    nearest: list[tuple[int, float]] | None = None,
) -> list[tuple[int, float, float, float | None]]:
    """(id, similarity, best neighbour's similarity, similarity to ``unnamed_vector``) of the ``limit`` nearest rows,
    then of the ``wanted`` rows that are not among them; nearest first. The last is None without that vector (and
    organisation-wide, where no names are read). Organisation-wide, ``nearest`` is that search's result when it
    was already read (``_nearest_when_embedded``)."""
    literal = _vector_literal(vector)
    if scope.vector_features_sql:
        sql = scope.vector_features_sql.format(where=scope.sql_where)
        unnamed = _vector_literal(unnamed_vector) if unnamed_vector is not None else None
        params = [literal, unnamed, model, *scope.params, limit, wanted]
        if scope.smoothed_vector_sql:
            params.insert(0, VECTOR_NEIGHBOUR_WEIGHT)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return [
                (row[0], float(row[1]), float(row[2]), None if row[3] is None else float(row[3]))
                for row in cursor.fetchall()
            ]
    # The organisation's passages: the (HNSW) ranking with its rows' similarities, then the wanted rows' ones.
    if nearest is None:
        nearest = _nearest_similarities(
            scope=scope, model=model, literal=literal, limit=limit, vector_sql=vector_sql, distance=distance
        )
    found = {pk for pk, _ in nearest}
    rest = sorted({pk for pk in wanted if pk not in found})
    sims = {}
    if rest:
        with connection.cursor() as cursor:
            cursor.execute(_SIMILARITIES_SQL.format(distance=distance, table=scope.table), [literal, model, rest])
            sims = {row[0]: float(row[1]) for row in cursor.fetchall()}
    rows: list[tuple[int, float, float, float | None]] = [(pk, sim, 0.0, None) for pk, sim in nearest]
    return rows + [(pk, sims[pk], 0.0, None) for pk in rest if pk in sims]


def _vector_literal(vector: list[float]) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in vector) + "]"


# The names of the people in one customer's conversations (its messages' authors; a passage made from a message has
# that message's author): the words whose vectors the query's vector loses for the unnamed feature (step 6).
_PARTICIPANTS_SQL = (
    "SELECT DISTINCT author_name FROM tickets_ticketmessage WHERE customer_id = %s AND author_name <> ''"
)


def _named_vectors_start(scope: _Scope, query: str) -> list[tuple[str, Future[list[float]]]]:
    """Start embedding each word of the names of the scope's customer's people that the query mentions, one word a
    text (memory/query_parts.py; a person's name recurs in searches, so its vector is soon cached). Nothing is started
    when the search is not one customer's or the query names no one."""
    if scope.customer_id is None or not LEARNED_UNNAMED:
        return []
    if scope.kept_words is not None:  # the rows this search's text ranking read in the process
        names = sorted(author for author in scope.kept_words.by_author if author)
    else:
        with connection.cursor() as cursor:
            cursor.execute(_PARTICIPANTS_SQL, [scope.customer_id])
            names = [row[0] for row in cursor.fetchall()]
    started = (_query_vector_start(word) for word in named_words(query, names))
    return [pending for pending in started if pending is not None]


def _unnamed_vector(
    model: str, vector: list[float], pending: list[tuple[str, Future[list[float]]]]
) -> list[float] | None:
    """The query's vector less UNNAMED_NAME_WEIGHT x the mean vector of the names it mentions, at unit length; None
    when it mentions none (or a name's vector is missing): the query's own meaning then stands for it."""
    if not pending:
        return None
    found = [_query_vector_wait(one) for one in pending]
    names = [name for _, name in (f for f in found if f is not None and f[0] == model)]
    if len(names) != len(pending):
        return None
    unnamed = [
        x - UNNAMED_NAME_WEIGHT * sum(column) / len(names)
        for x, column in zip(vector, zip(*names, strict=True), strict=True)
    ]
    norm = math.sqrt(sum(x * x for x in unnamed))
    return [x / norm for x in unnamed] if norm > 0 else None


def _nearest_when_embedded(
    *, scope: _Scope, pending: tuple[str, Future[list[float]]], limit: int, vector_sql: str, distance: str
) -> list[tuple[int, float]] | None:
    """On a worker thread: ``_nearest_similarities`` for the query's vector once it is embedded; None without one."""
    found = _query_vector_wait(pending)
    if found is None:
        return None
    model, vector = found
    return _nearest_similarities(
        scope=scope, model=model, literal=_vector_literal(vector), limit=limit, vector_sql=vector_sql, distance=distance
    )


def _nearest_similarities(
    *, scope: _Scope, model: str, literal: str, limit: int, vector_sql: str, distance: str
) -> list[tuple[int, float]]:
    """``_vector_ranking``'s rows with their similarity, read by the same search (HNSW, else exact): the rows the
    index scan has just read are not looked up again by id."""
    select = "SELECT m.id FROM "
    if not vector_sql.startswith(select):
        raise ValueError(f"unexpected vector query: {vector_sql[:40]!r}")
    rest = vector_sql.format(where=scope.sql_where).removeprefix(select)
    sql = f"SELECT m.id, 1 - ({distance}) FROM {rest}"  # noqa: S608  (this module's own SQL)
    rows = _nearest_rows(sql, distance, [literal, model, *scope.params, literal, limit], limit)
    return [(row[0], float(row[1])) for row in rows]
