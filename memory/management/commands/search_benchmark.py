"""Latency of hybrid archival search at 10k / 100k / 1M passages in one organisation.

For each size: a throwaway organisation gets that many synthetic passages (random unit vectors, text drawn
from a support vocabulary) spread over customers of ``--per-customer`` passages each, loaded with COPY. The
passage HNSW index is dropped before the load and rebuilt after it (the build time is reported): that is
why the command wants ``--yes`` and belongs on a scratch database. Then ``--queries`` searches run through
``memory.selectors.passage_search``, each with a fresh query embedded by the configured model, and the
p50/p95 of the whole call (embedding included) are printed, for one customer and organisation-wide.
"""

from __future__ import annotations

import random
import statistics
import time
import uuid
from typing import Any

import numpy as np
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from memory.embeddings import embedder_get, query_cache_clear, query_embed
from memory.locality import tables_cluster
from memory.models import EMBEDDING_DIMENSIONS, ArchivalPassage
from memory.selectors import passage_search
from tickets.models import Customer, Organization

HNSW_INDEX = "passage_embedding_hnsw"
HNSW_SQL = (
    f"CREATE INDEX {HNSW_INDEX} ON memory_archivalpassage USING hnsw (embedding vector_cosine_ops) "
    "WITH (m = 16, ef_construction = 64)"
)
WORDS = [
    "refund",
    "invoice",
    "charge",
    "billing",
    "card",
    "payment",
    "plan",
    "upgrade",
    "downgrade",
    "cancel",
    "renewal",
    "discount",
    "coupon",
    "receipt",
    "router",
    "modem",
    "wifi",
    "signal",
    "outage",
    "reboot",
    "firmware",
    "update",
    "install",
    "app",
    "login",
    "password",
    "reset",
    "account",
    "email",
    "phone",
    "sms",
    "notification",
    "delivery",
    "shipping",
    "parcel",
    "tracking",
    "return",
    "exchange",
    "warranty",
    "repair",
    "broken",
    "screen",
    "battery",
    "charger",
    "cable",
    "printer",
    "scanner",
    "sync",
    "calendar",
    "contacts",
    "export",
    "import",
    "backup",
    "restore",
    "storage",
    "quota",
    "slow",
    "crash",
    "error",
    "timeout",
    "bug",
    "feature",
    "request",
    "feedback",
    "complaint",
    "escalation",
    "manager",
    "callback",
    "weekend",
    "morning",
    "evening",
    "spanish",
    "german",
    "french",
    "language",
    "preference",
    "dark",
    "mode",
    "accessibility",
    "contract",
    "invoice",
    "pdf",
]


class Command(BaseCommand):
    help = "Measure p50/p95 latency of hybrid passage search (query embedding included) at several sizes."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--sizes", default="10000,100000", help="passages in the organisation, comma-separated")
        parser.add_argument("--per-customer", type=int, default=1000, help="passages per customer")
        parser.add_argument("--queries", type=int, default=100, help="searches timed per size")
        parser.add_argument("--yes", action="store_true", help="agree to drop and rebuild the passage HNSW index")
        parser.add_argument(
            "--keep", action="store_true", help="keep the loaded organisation (its slug is printed) for --reuse"
        )
        parser.add_argument("--reuse", metavar="SLUG", help="measure an organisation a --keep run left; load nothing")
        parser.add_argument(
            "--cluster",
            action="store_true",
            help="after the load, CLUSTER the passages by organisation/customer (manage.py cluster_tables) before "
            "building HNSW; without it rows stay in arrival order, each customer's spread over the table",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["reuse"]:
            organization = Organization.objects.filter(slug=options["reuse"], slug__startswith="search-bench-").first()
            if organization is None:
                raise CommandError(f"No benchmark organisation {options['reuse']!r} (a --keep run prints its slug).")
            if options["queries"] < 1:
                raise CommandError("--queries must be positive")
            query_embed("warm up the model")
            customers = list(Customer.objects.filter(organization=organization))
            size = ArchivalPassage.objects.filter(organization=organization).count()
            self.stdout.write(f"{size} passages, {len(customers)} customers (reused {organization.slug})")
            self._measure_both(organization, customers, options["queries"])
            return
        if not options["yes"]:
            raise CommandError(
                "This drops and rebuilds the passage HNSW index: run it on a scratch database with --yes."
            )
        try:
            sizes = [int(part) for part in options["sizes"].split(",") if part.strip()]
        except ValueError as exc:
            raise CommandError("--sizes must be comma-separated integers") from exc
        if not sizes or min(sizes) < 1 or options["per_customer"] < 1 or options["queries"] < 1:
            raise CommandError("--sizes, --per-customer and --queries must be positive")
        query_embed("warm up the model")  # loading the model is start-up cost, not search latency
        for size in sizes:
            self._one_size(
                size, options["per_customer"], options["queries"], keep=options["keep"], cluster=options["cluster"]
            )

    def _one_size(self, size: int, per_customer: int, queries: int, *, keep: bool, cluster: bool) -> None:
        organization = Organization.objects.create(
            name="search benchmark", slug=f"search-bench-{uuid.uuid4().hex[:10]}"
        )
        try:
            customers = _customers(organization, max(1, size // per_customer))
            started = time.perf_counter()
            _drop_index()
            _load(organization, customers, size)
            loaded = time.perf_counter() - started
            clustered = ""
            if cluster:  # before the HNSW build, which CLUSTER would otherwise rebuild
                (outcome,) = tables_cluster(tables=("memory_archivalpassage",))
                clustered = f", CLUSTER {outcome.seconds:.1f}s"
            started = time.perf_counter()
            _build_index()
            built = time.perf_counter() - started
            self.stdout.write(
                f"{size} passages, {len(customers)} customers: load {loaded:.1f}s{clustered}, HNSW build {built:.1f}s"
            )
            self._measure_both(organization, customers, queries)
        except BaseException:
            keep = False  # a half-loaded organisation is no use to --reuse
            raise
        finally:
            if keep:
                self.stdout.write(f"  kept as {organization.slug}: measure again with --reuse {organization.slug}")
            else:
                _delete(organization)

    def _measure_both(self, organization: Organization, customers: list[Customer], queries: int) -> None:
        pages = _heap_pages(random.Random(1).sample(customers, min(5, len(customers))))
        self.stdout.write(f"  heap pages holding one customer's passages: {', '.join(map(str, pages))}")
        self._measure(
            "one customer",
            queries,
            lambda q: passage_search(organization=organization, customer=random.choice(customers), query=q),
        )
        self._measure(
            "organisation-wide",
            queries,
            lambda q: passage_search(organization=organization, customer=None, query=q),
        )
        self._measure_overlap(organization, customers, queries)

    def _measure_overlap(self, organization: Organization, customers: list[Customer], queries: int) -> None:
        """Baseline in the same process: the query embedded before the search instead of during it.

        Searches alternate between the two ways so that both see the same machine; each query is new.
        """
        rng = random.Random(queries)
        overlapped: list[float] = []
        sequential: list[float] = []
        for number in range(2 * queries):
            query = " ".join(rng.sample(WORDS, 4))
            customer = rng.choice(customers)
            query_cache_clear()
            started = time.perf_counter()
            if number % 2:
                query_embed(query)  # the search below finds this vector cached: embed, then database
                passage_search(organization=organization, customer=customer, query=query)
                sequential.append((time.perf_counter() - started) * 1000)
            else:
                passage_search(organization=organization, customer=customer, query=query)
                overlapped.append((time.perf_counter() - started) * 1000)
        self.stdout.write(
            f"  one customer, query embedded first (baseline): p50 {_p(sequential, 50):.1f} ms  "
            f"p95 {_p(sequential, 95):.1f} ms; embedded during the search: p50 {_p(overlapped, 50):.1f} ms  "
            f"p95 {_p(overlapped, 95):.1f} ms (ratio p50 {_p(overlapped, 50) / _p(sequential, 50):.2f}x, "
            f"p95 {_p(overlapped, 95) / _p(sequential, 95):.2f}x)"
        )

    def _measure(self, label: str, queries: int, search: Any) -> None:
        rng = random.Random(len(label))
        query_cache_clear()  # every query below is new anyway; no size may profit from an earlier one
        timings = []
        for _ in range(queries):
            query = " ".join(rng.sample(WORDS, 4))  # a new text each time: no cache can answer it
            started = time.perf_counter()
            page = search(query)
            timings.append((time.perf_counter() - started) * 1000)
            if len(page.results) != page.page_size:
                raise CommandError(f"{label} search returned {len(page.results)} results, wanted {page.page_size}")
        embedding = []
        embedder = embedder_get()
        for _ in range(queries):  # the query embedding alone (uncached), to tell model time from database time
            query = " ".join(rng.sample(WORDS, 4))
            started = time.perf_counter()
            embedder.embed([query])
            embedding.append((time.perf_counter() - started) * 1000)
        self.stdout.write(
            f"  {label}: p50 {_p(timings, 50):.1f} ms  p95 {_p(timings, 95):.1f} ms  ({queries} searches; "
            f"query embedding alone p50 {_p(embedding, 50):.1f} ms  p95 {_p(embedding, 95):.1f} ms)"
        )


def _p(values: list[float], percent: int) -> float:
    ordered = sorted(values)
    return (
        statistics.median(ordered)
        if percent == 50
        else ordered[min(len(ordered) - 1, int(percent / 100 * len(ordered)))]
    )


def _heap_pages(customers: list[Customer]) -> list[int]:
    """How many distinct 8 kB heap pages hold each customer's passages (what a cold search must read)."""
    pages = []
    with connection.cursor() as cursor:
        for customer in customers:
            cursor.execute(
                "SELECT count(DISTINCT (ctid::text::point)[0]) FROM memory_archivalpassage WHERE customer_id = %s",
                [customer.pk],
            )
            row = cursor.fetchone()
            pages.append(int(row[0]) if row else 0)
    return pages


def _delete(organization: Organization) -> None:
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM memory_archivalpassage WHERE organization_id = %s", [organization.pk])
    organization.delete()


def _customers(organization: Organization, count: int) -> list[Customer]:
    Customer.objects.bulk_create(
        [Customer(organization=organization, name=f"bench customer {i}") for i in range(count)], batch_size=1000
    )
    return list(Customer.objects.filter(organization=organization))


def _drop_index() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX IF EXISTS {HNSW_INDEX}")


def _build_index() -> None:
    with connection.cursor() as cursor:
        # The graph must fit in maintenance_work_mem or the build crawls (1M x 384-d takes more than 3 GB);
        # one extra worker on 2 cores.
        cursor.execute("SET maintenance_work_mem = '6GB'")
        cursor.execute("SET max_parallel_maintenance_workers = 1")
        cursor.execute(HNSW_SQL)
        cursor.execute("RESET maintenance_work_mem")
        cursor.execute("ANALYZE memory_archivalpassage")


def _load(organization: Organization, customers: list[Customer], size: int) -> None:
    """COPY ``size`` synthetic passages: random unit vectors recorded as the configured model's."""
    rng = np.random.default_rng(size)
    model = embedder_get().name
    words = np.array(WORDS)
    connection.ensure_connection()
    raw = connection.connection
    columns = (
        "organization_id, customer_id, text, text_hash, tags, embedding, embedding_model, change_source, staff_only"
    )
    with raw.cursor() as cursor, cursor.copy(f"COPY memory_archivalpassage ({columns}, created_at) FROM STDIN") as copy:
        for start in range(0, size, 10_000):
            count = min(10_000, size - start)
            vectors = rng.standard_normal((count, EMBEDDING_DIMENSIONS), dtype=np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            picks = rng.integers(0, len(words), size=(count, 10))
            for offset in range(count):
                number = start + offset
                text = f"{' '.join(words[picks[offset]])} #{number}"
                customer = customers[number % len(customers)]
                vector = "[" + ",".join(f"{x:.6f}" for x in vectors[offset]) + "]"
                copy.write_row(
                    (organization.pk, customer.pk, text, uuid.uuid4().hex, "{}", vector, model, "system", "f", "now")
                )
