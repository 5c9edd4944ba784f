"""Latency of hybrid archival search at 10k / 100k / 1M passages in one organisation.

For each size: a throwaway organisation gets that many synthetic passages (text drawn from a support
vocabulary; random unit vectors, or with ``--vectors model`` each text's embedding by the configured model)
spread over customers of ``--per-customer`` passages each, loaded with binary COPY (``memory/synthetic.py``)
in customer order, or round-robin with ``--interleaved``. The table's secondary
indexes are dropped for the load and rebuilt after it, the passage HNSW index last (each time is reported):
that is why the command wants ``--yes`` and belongs on a scratch database. Then ``--queries`` searches run
through ``memory.selectors.passage_search``, each with a fresh query embedded by the configured model, and
the p50/p95 of the whole call (embedding included) are printed, for one customer and organisation-wide.

``--reuse SLUG --cold`` measures a kept load from cold: the embedded PostgreSQL is restarted (empty shared
buffers), its data files are dropped from the OS page cache, and nothing reads the table before the timed
searches; how much of the table was resident before and after is printed, and how fast the disk answered 200 random
8 kB reads of the table just before (a virtual disk's can change speed from one minute to the next).
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from memory.embeddings import embedder_get, query_cache_clear, query_embed
from memory.locality import disk_probe, embedded_restart, page_cache_evict, tables_cluster
from memory.models import ArchivalPassage
from memory.selectors import SearchPage, passage_search
from memory.synthetic import PassagePlan, passages_copy
from tickets.models import Customer, Organization

TABLE = "memory_archivalpassage"
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
    warm_up = 0

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
            "--cold",
            action="store_true",
            help="with --reuse: restart the embedded PostgreSQL and drop its files from the OS page cache first",
        )
        parser.add_argument(
            "--interleaved",
            action="store_true",
            help="write the rows round-robin across customers (arrival order) instead of customer by customer",
        )
        parser.add_argument(
            "--warm-up",
            type=int,
            default=0,
            metavar="N",
            help="N untimed organisation-wide searches before the timed ones: each benchmark run starts its own "
            "connection to a server whose shared buffers may not hold the HNSW graph yet (default 0)",
        )
        parser.add_argument(
            "--vectors",
            choices=("random", "model"),
            default="random",
            help="random unit vectors (fast to make; the worst case for HNSW, whose search finds no neighbourhoods "
            "in them) or each passage's text embedded by the configured model (about 30 minutes a million)",
        )
        parser.add_argument(
            "--cluster",
            action="store_true",
            help="after the load, CLUSTER the passages by organisation/customer (manage.py cluster_tables) before "
            "building HNSW (only useful with --interleaved)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["queries"] < 1:
            raise CommandError("--queries must be positive")
        if options["warm_up"] < 0:
            raise CommandError("--warm-up must be 0 or more")
        self.warm_up = options["warm_up"]
        if options["cold"] and not options["reuse"]:
            raise CommandError("--cold measures a kept load: give --reuse SLUG")
        if options["reuse"]:
            self._reuse(options["reuse"], options["queries"], cold=options["cold"])
            return
        if not options["yes"]:
            raise CommandError(
                "This drops and rebuilds the passage HNSW index: run it on a scratch database with --yes."
            )
        try:
            sizes = [int(part) for part in options["sizes"].split(",") if part.strip()]
        except ValueError as exc:
            raise CommandError("--sizes must be comma-separated integers") from exc
        if not sizes or min(sizes) < 1 or options["per_customer"] < 1:
            raise CommandError("--sizes, --per-customer and --queries must be positive")
        query_embed("warm up the model")  # loading the model is start-up cost, not search latency
        for size in sizes:
            self._one_size(
                size,
                options["per_customer"],
                options["queries"],
                keep=options["keep"],
                cluster=options["cluster"],
                interleaved=options["interleaved"],
                model_vectors=options["vectors"] == "model",
            )

    def _reuse(self, slug: str, queries: int, *, cold: bool) -> None:
        organization = Organization.objects.filter(slug=slug, slug__startswith="search-bench-").first()
        if organization is None:
            raise CommandError(f"No benchmark organisation {slug!r} (a --keep run prints its slug).")
        # Its vectors carry the model name they were made under; searches read only the current embedder's, so an
        # organisation built before the embedder changed would be searched by full text alone (a wrong figure).
        built_with = (
            ArchivalPassage.objects.filter(organization=organization).values_list("embedding_model", flat=True).first()
        )
        current = embedder_get().name
        if built_with is not None and built_with != current:
            raise CommandError(
                f"{slug} was built with the embedder {built_with!r}, the current one is {current!r}: its vectors "
                "would not be searched. Build a new one (--sizes N --keep)."
            )
        query_embed("warm up the model")
        customers = list(Customer.objects.filter(organization=organization).order_by("pk"))
        if cold:
            self._make_cold()  # after the check above: the timed searches start from empty caches
        # Nothing may read the passages before the timed searches: the planner's row estimate stands in for
        # a count (counting would read the table back into the caches).
        self.stdout.write(f"about {_estimated_rows()} passages, {len(customers)} customers (reused {slug})")
        self._measure_all(organization, customers, queries, cold=cold)

    def _make_cold(self) -> None:
        pgdata = os.environ.get("SUPPORTMEM_EMBEDDED_PGDATA")
        if not pgdata:
            raise CommandError("--cold restarts the embedded PostgreSQL: run without DATABASE_URL")
        connection.close()
        started = time.perf_counter()
        embedded_restart(Path(pgdata))
        restarted = time.perf_counter() - started
        # How fast the disk serves scattered reads now: a cold search's figures depend on it.
        probe = disk_probe([path for kind, paths in _relation_files() if kind == "heap" for path in paths])
        files = page_cache_evict(Path(pgdata))
        self.stdout.write(
            f"  PostgreSQL restarted in {restarted:.1f}s (shared buffers empty); {files} data files dropped from "
            f"the OS page cache; {_resident()}\n"
            f"  disk now: {probe.reads} random 8 kB reads of the passage table, p50 {probe.p50_us:,.0f} us, "
            f"p95 {probe.p95_us:,.0f} us, {probe.over_1ms} over 1 ms"
        )

    def _one_size(
        self,
        size: int,
        per_customer: int,
        queries: int,
        *,
        keep: bool,
        cluster: bool,
        interleaved: bool,
        model_vectors: bool,
    ) -> None:
        organization = Organization.objects.create(
            name="search benchmark", slug=f"search-bench-{uuid.uuid4().hex[:10]}"
        )
        try:
            customers = _customers(organization, max(1, size // per_customer))
            embedding = _Timed(embedder_get().embed) if model_vectors else None
            plan = PassagePlan(
                organization_id=organization.pk,
                customer_ids=[customer.pk for customer in customers],
                size=size,
                per_customer=per_customer,
                model=embedder_get().name,
                words=WORDS,
                seed=size,
                interleaved=interleaved,
                embed=embedding,
            )
            timings = _load(plan)
            if embedding is not None:  # part of COPY's time: the rows were embedded as they were written
                timings["of which embedding"] = embedding.seconds
            if cluster:  # before the HNSW build, which CLUSTER would otherwise rebuild
                (outcome,) = tables_cluster(tables=(TABLE,))
                timings["CLUSTER"] = outcome.seconds
            started = time.perf_counter()
            _build_index()
            timings["HNSW build"] = time.perf_counter() - started
            order = "interleaved" if interleaved else "customer order"
            vectors = "their texts' embeddings" if model_vectors else "random vectors"
            self.stdout.write(
                f"{size} passages, {len(customers)} customers ({order}, {vectors}): "
                + ", ".join(f"{label} {seconds:.1f}s" for label, seconds in timings.items())
                + f"; COPY {size / timings['COPY']:,.0f} rows/s"
            )
            self._measure_all(organization, customers, queries, cold=False)
        except BaseException:
            keep = False  # a half-loaded organisation is no use to --reuse
            raise
        finally:
            if keep:
                self.stdout.write(f"  kept as {organization.slug}: measure again with --reuse {organization.slug}")
            else:
                _delete(organization)

    def _measure_all(self, organization: Organization, customers: list[Customer], queries: int, *, cold: bool) -> None:
        connection.ensure_connection()  # a server keeps its connections: connecting is not search latency
        chosen = random.Random(queries).sample(customers, min(queries, len(customers)))
        chosen = (chosen * (queries // len(chosen) + 1))[:queries]
        first = "cold (first read of each customer)" if cold else "first pass"
        self._measure(f"one customer, {first}", organization, chosen)
        if cold:
            self.stdout.write(f"  after the cold pass: {_resident()}")
        self._measure("one customer, same customers again (warm)", organization, chosen)
        label = "organisation-wide"
        if self.warm_up:
            rng = random.Random(-self.warm_up)  # other queries than the timed ones
            for _ in range(self.warm_up):
                passage_search(organization=organization, customer=None, query=" ".join(rng.sample(WORDS, 4)))
            label += f" (after {self.warm_up} untimed)"
        self._measure(label, organization, [None] * queries)
        # A date range keeps half of the organisation's rows: HNSW, which filters after its graph search, returns too
        # few of the wanted rows from its first list (docs/performance.md, session 15).
        self._measure(
            "organisation-wide, the newer half (start=)", organization, [None] * queries, start=_middle(organization)
        )
        self._measure_overlap(organization, customers, queries)
        pages = _heap_pages(random.Random(1).sample(customers, min(5, len(customers))))  # after: it reads the heap
        self.stdout.write(f"  heap pages holding one customer's passages: {', '.join(map(str, pages))}")

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

    def _measure(
        self,
        label: str,
        organization: Organization,
        owners: Sequence[Customer | None],
        *,
        start: datetime | None = None,
    ) -> None:
        rng = random.Random(len(label))
        query_cache_clear()  # every query below is new anyway; no size may profit from an earlier one
        search: Callable[[str, Customer | None], SearchPage[Any]] = lambda query, customer: passage_search(  # noqa: E731
            organization=organization, customer=customer, query=query, start=start
        )
        timings = []
        for customer in owners:
            query = " ".join(rng.sample(WORDS, 4))  # a new text each time: no cache can answer it
            started = time.perf_counter()
            page = search(query, customer)
            timings.append((time.perf_counter() - started) * 1000)
            if len(page.results) != page.page_size:
                raise CommandError(f"{label} search returned {len(page.results)} results, wanted {page.page_size}")
        embedding = []
        embedder = embedder_get()
        for _ in owners:  # the query embedding alone (uncached), to tell model time from database time
            query = " ".join(rng.sample(WORDS, 4))
            started = time.perf_counter()
            embedder.embed([query])
            embedding.append((time.perf_counter() - started) * 1000)
        self.stdout.write(
            f"  {label}: p50 {_p(timings, 50):.1f} ms  p95 {_p(timings, 95):.1f} ms  first {timings[0]:.1f} ms  "
            f"({len(owners)} searches; query embedding alone p50 {_p(embedding, 50):.1f} ms  "
            f"p95 {_p(embedding, 95):.1f} ms)"
        )


def _middle(organization: Organization) -> datetime | None:
    """When the newer half of the organisation's passages begins (they are loaded oldest first, one a second)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT min(id), max(id) FROM {TABLE} WHERE organization_id = %s",  # noqa: S608  (a constant)
            [organization.pk],
        )
        row = cursor.fetchone()
        if not row or row[0] is None:
            return None
        cursor.execute(
            f"SELECT created_at FROM {TABLE} WHERE organization_id = %s AND id >= %s ORDER BY id LIMIT 1",  # noqa: S608
            [organization.pk, (row[0] + row[1]) // 2],
        )
        found = cursor.fetchone()
    return found[0] if found else None


def _p(values: list[float], percent: int) -> float:
    ordered = sorted(values)
    return (
        statistics.median(ordered)
        if percent == 50
        else ordered[min(len(ordered) - 1, int(percent / 100 * len(ordered)))]
    )


def _estimated_rows() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = %s::regclass", [TABLE])
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def _relation_files() -> list[tuple[str, list[Path]]]:
    """("heap" or "indexes", its files) for the passage table and each of its indexes."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('data_directory'), pg_relation_filepath(oid), relkind FROM pg_class "
            "WHERE oid = %s::regclass OR oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = %s::regclass)",
            [TABLE, TABLE],
        )
        relations = cursor.fetchall()
    found = []
    for data_dir, relpath, kind in relations:
        base = Path(data_dir) / relpath
        # A relation over 1 GB continues in segments named 16384.1, 16384.2, ...
        segments = [path for path in base.parent.glob(f"{base.name}.*") if path.suffix[1:].isdigit()]
        found.append(("heap" if kind == "r" else "indexes", [base, *segments]))
    return found


def _resident() -> str:
    """How much of the passage table and its indexes is in the OS page cache (fincore), and in shared buffers."""
    fincore = shutil.which("fincore")
    if fincore is None:
        return "OS page cache residency unknown (no fincore)"
    totals = {"heap": [0, 0], "indexes": [0, 0]}
    for kind, paths in _relation_files():
        output = subprocess.run(  # noqa: S603  (fincore on the server's own data files)
            [fincore, "--bytes", "--noheadings", "--raw", "--output", "RES,SIZE", *map(str, paths)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        total = totals[kind]
        for line in output.splitlines():
            resident, size = line.split()
            total[0] += int(resident)
            total[1] += int(size)
    return "; ".join(
        f"{name} {resident / 2**20:,.1f} of {size / 2**20:,.0f} MB in the OS page cache"
        for name, (resident, size) in totals.items()
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
    return list(Customer.objects.filter(organization=organization).order_by("pk"))


def _secondary_indexes() -> list[tuple[str, str]]:
    """(name, definition) of the table's indexes that back no constraint (the primary key stays)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = %s::regclass AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = "
            "i.indexrelid) ORDER BY c.relname",
            [TABLE],
        )
        return [(name, definition) for name, definition in cursor.fetchall()]


class _Timed:
    """An embedder's ``embed`` that adds up the seconds it took."""

    def __init__(self, embed: Callable[[list[str]], list[list[float]]]) -> None:
        self.embed = embed
        self.seconds = 0.0

    def __call__(self, texts: list[str]) -> list[list[float]]:
        started = time.perf_counter()
        try:
            return self.embed(texts)
        finally:
            self.seconds += time.perf_counter() - started


def _load(plan: PassagePlan) -> dict[str, float]:
    """COPY the plan's passages with the secondary indexes dropped, rebuild them (all but HNSW), VACUUM ANALYZE.

    The indexes come back even when the COPY fails; the HNSW index is rebuilt by ``_build_index``.
    """
    timings = {}
    indexes = _secondary_indexes()
    with connection.cursor() as cursor:
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX IF EXISTS "{name}"')
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        row = cursor.fetchone()
        superuser = bool(row and row[0])
    try:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            if superuser:  # the rows reference the organisation and customers just created: skip the FK triggers
                cursor.execute("SET session_replication_role = replica")
            try:
                passages_copy(plan)
            finally:
                if superuser:
                    cursor.execute("RESET session_replication_role")
        timings["COPY"] = time.perf_counter() - started
    finally:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            for name, definition in indexes:
                if name != HNSW_INDEX:
                    cursor.execute(definition)
        timings["indexes"] = time.perf_counter() - started
    started = time.perf_counter()
    with connection.cursor() as cursor:
        # Sets hint bits and the visibility map now, so that the first searches do not write every page they read.
        cursor.execute(f"VACUUM (ANALYZE) {TABLE}")
    timings["VACUUM ANALYZE"] = time.perf_counter() - started
    return timings


def _build_index() -> None:
    with connection.cursor() as cursor:
        # The embedded server sizes maintenance_work_mem so that the graph fits (support_agent/embedded_pg.py).
        cursor.execute(f"DROP INDEX IF EXISTS {HNSW_INDEX}")
        cursor.execute(HNSW_SQL)
        cursor.execute(f"ANALYZE {TABLE}")
