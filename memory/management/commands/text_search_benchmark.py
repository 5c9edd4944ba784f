"""python manage.py text_search_benchmark: one customer's full-text ranking, the statement against the kept words.

A temporary organisation gets one customer with ``--messages`` messages in conversations of ``--per-ticket``
turns (two authors; words drawn from a seeded, Zipf-weighted vocabulary of made-up words, so common and rare words
behave as in real text). Then ``--queries`` queries of three to six such words (some with an author's name) are
scored both ways, alternating in this process: by ``selectors._MESSAGE_HITS_SQL`` on every search, and from the
words kept in the process (``memory/postings.py``). It prints both p50/p95, the median ratio, whether they found the
same rows with the same scores, the first read of the customer's rows, and a search after each of 20 new messages.
The organisation is deleted afterwards.
"""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from memory import postings, selectors
from tickets.benchmarking import percentile
from tickets.models import Customer, Organization, Ticket, TicketMessage

AUTHORS = ("Dana Whitfield", "Sam Okafor")
START = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


class Command(BaseCommand):
    help = "Time one customer's BM25 over messages: the SQL statement against the words kept in the process."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--messages", type=int, default=5000, help="messages of the one customer")
        parser.add_argument("--per-ticket", type=int, default=20, help="turns per conversation")
        parser.add_argument("--queries", type=int, default=200, help="queries timed (each both ways)")
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args: Any, **options: Any) -> None:
        if min(options["messages"], options["per_ticket"], options["queries"]) < 1:
            raise CommandError("--messages, --per-ticket and --queries must be positive")
        rng = random.Random(options["seed"])
        vocabulary = _vocabulary(rng, 3000)
        weights = [1 / rank for rank in range(1, len(vocabulary) + 1)]
        organization = Organization.objects.create(
            name="text_search_benchmark (temporary)", slug=f"text-bench-{uuid.uuid4().hex[:12]}"
        )
        try:
            customer = Customer.objects.create(organization=organization, name=AUTHORS[0])
            started = time.perf_counter()
            _load(customer, options["messages"], options["per_ticket"], rng, vocabulary, weights)
            self.stdout.write(f"loaded {options['messages']} messages in {time.perf_counter() - started:.1f} s")
            queries = [_query(rng, vocabulary, weights) for _ in range(options["queries"])]
            self._measure(customer, queries)
        finally:
            organization.delete()

    def _measure(self, customer: Customer, queries: list[str]) -> None:
        scope = selectors._Scope(table="tickets_ticketmessage m", customer_id=customer.pk)
        scope.add("m.customer_id = %s", customer.pk)
        scope.postings = postings.Filter()
        kept = selectors.POSTINGS_IN_PROCESS
        try:
            postings.kept_forget(customer.pk)
            selectors.POSTINGS_IN_PROCESS = True
            started = time.perf_counter()
            _scores(scope, "warm up")
            first_read = (time.perf_counter() - started) * 1000
            times: dict[bool, list[float]] = {True: [], False: []}
            same_rows, worst = 0, 0.0
            for index, query in enumerate(queries):
                found = {}
                for in_process in (True, False) if index % 2 else (False, True):
                    selectors.POSTINGS_IN_PROCESS = in_process
                    started = time.perf_counter()
                    found[in_process] = _scores(scope, query)
                    times[in_process].append((time.perf_counter() - started) * 1000)
                statement = dict(found[False])
                same_rows += _same_rows(found[True], found[False])
                for pk, score in found[True]:
                    if pk in statement:
                        worst = max(worst, abs(score - statement[pk]) / max(abs(statement[pk]), 1e-300))
            selectors.POSTINGS_IN_PROCESS = True
            after_new = []
            ticket = Ticket.objects.filter(customer=customer).order_by("-id").first()
            for number in range(20):
                TicketMessage.objects.create(
                    organization_id=customer.organization_id,
                    customer=customer,
                    ticket=ticket,
                    author_role="customer",
                    author_name=AUTHORS[0],
                    body=f"{queries[number % len(queries)]} once more ({number})",
                    created_at=START + timedelta(days=3650, minutes=number),
                )
                started = time.perf_counter()
                _scores(scope, queries[number % len(queries)])
                after_new.append((time.perf_counter() - started) * 1000)
        finally:
            selectors.POSTINGS_IN_PROCESS = kept
        ratios = [a / b for a, b in zip(times[True], times[False], strict=True)]
        statement_ms, kept_ms = times[False], times[True]
        self.stdout.write(
            f"statement: p50 {percentile(statement_ms, 0.5):.2f} ms  p95 {percentile(statement_ms, 0.95):.2f} ms\n"
            f"kept in the process: p50 {percentile(kept_ms, 0.5):.2f} ms  p95 {percentile(kept_ms, 0.95):.2f} ms\n"
            f"median ratio kept / statement: {percentile(ratios, 0.5):.3f} ({len(queries)} queries, alternating)\n"
            f"same rows (but for equal scores at the cut): {same_rows} of {len(queries)}; "
            f"largest relative score difference {worst:.1e}\n"
            f"first read of the customer's rows: {first_read:.1f} ms; a search after each of 20 new messages: "
            f"p50 {percentile(after_new, 0.5):.2f} ms  p95 {percentile(after_new, 0.95):.2f} ms"
        )


def _same_rows(first: list[tuple[int, float]], second: list[tuple[int, float]]) -> bool:
    """The same rows, but for rows scoring as the last one kept (to 1e-12): which of those make the cut may differ
    when two sums of the same terms differ in their last bit."""
    cut = min((score for _, score in second), default=0.0)
    differ = {pk for pk, _ in first} ^ {pk for pk, _ in second}
    scores = dict(first) | dict(second)
    return all(abs(scores[pk] - cut) <= 1e-12 * max(abs(cut), 1.0) for pk in differ)


def _scores(scope: selectors._Scope, query: str) -> list[tuple[int, float]]:
    scope.checked = scope.kept_words = None  # each search checks the kept words again, as message_search does
    return selectors._text_scores(
        scope=scope, query=query, limit=selectors.MAX_RESULTS, hits_sql=selectors._MESSAGE_HITS_SQL
    )


def _vocabulary(rng: random.Random, size: int) -> list[str]:
    consonants, vowels = "bcdfghjklmnprstvz", "aeiou"
    words: set[str] = set()
    while len(words) < size:
        syllables = rng.randint(2, 4)
        words.add("".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(syllables)))
    return sorted(words)


def _load(
    customer: Customer, count: int, per_ticket: int, rng: random.Random, vocabulary: list[str], weights: list[float]
) -> None:
    rows = []
    ticket = None
    for number in range(count):
        if number % per_ticket == 0:
            ticket = Ticket.objects.create(
                organization_id=customer.organization_id,
                customer=customer,
                external_id=f"bench-{number // per_ticket}",
                subject="benchmark",
                created_at=START + timedelta(days=number // per_ticket),
                updated_at=START + timedelta(days=number // per_ticket),
            )
        words = rng.choices(vocabulary, weights, k=rng.randint(5, 40))
        rows.append(
            TicketMessage(
                organization_id=customer.organization_id,
                customer=customer,
                ticket=ticket,
                author_role="customer" if number % 2 == 0 else "staff",
                author_name=AUTHORS[number % 2],
                body=" ".join(words).capitalize() + ".",
                created_at=START + timedelta(days=number // per_ticket, minutes=number % per_ticket),
            )
        )
    TicketMessage.objects.bulk_create(rows, batch_size=2000)
    with connection.cursor() as cursor:  # the statistics autovacuum would gather soon after such a load
        cursor.execute("ANALYZE tickets_ticketmessage")


def _query(rng: random.Random, vocabulary: list[str], weights: list[float]) -> str:
    words = rng.choices(vocabulary, weights, k=rng.randint(3, 6))
    if rng.random() < 0.3:
        words.insert(0, rng.choice(AUTHORS).split()[0])
    return " ".join(words)
