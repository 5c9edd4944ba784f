"""Physical order by owner: one customer's rows on few, contiguous heap pages.

Rows arrive in time order, interleaved across every customer of every organisation, so one customer's
1,000 passages end up on about 1,000 different 8 kB pages; a cold search then reads a thousand scattered
pages. ``CLUSTER`` rewrites a table in the order of an index: here organisation, customer, time. Each table
remembers its clustering index, so later runs only repeat the rewrite.

CLUSTER holds an ACCESS EXCLUSIVE lock on the table while it rewrites it and rebuilds every index (the HNSW
index included: about as long as building it), so it is a maintenance-window job (``manage.py
cluster_tables``), not a Celery beat task. New rows land at the end of the table until the next run.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from django.db import connection

# (table, index it is ordered by): passages by organisation, customer, time; messages and their vectors by
# customer (a customer belongs to one organisation).
CLUSTERED_TABLES: tuple[tuple[str, str], ...] = (
    ("memory_archivalpassage", "passage_owner_time"),
    ("memory_messageembedding", "message_embedding_customer"),
    ("tickets_ticketmessage", "message_customer_time"),
)


def one_customer(column: str) -> str:
    """``column = %s`` (one customer's rows) written so that PostgreSQL reads them through a bitmap of the index.

    An index scan reads the heap one page at a time, waiting for each; a bitmap heap scan visits the pages in file
    order and asks the OS for the next ``effective_io_concurrency`` of them ahead (``posix_fadvise``; the embedded
    server sets it: support_agent/embedded_pg.py). PostgreSQL plans an index scan for ``customer_id = X`` when the
    rows lie in customer order (``CLUSTER`` above) and has no per-statement hint; an OR over one column can only be
    served by a bitmap, and no customer has the id -1. From a cold cache, at 1,000,000 passages, one customer's
    full-text statement took 11.9-14.8 ms at the median and 45-47 at p95 through the index scan, 9.4-9.8 and 12-13
    through the bitmap (docs/performance.md, session 13). One customer's messages keep the equality: their words'
    fingerprint, read on every search, took 1.83 instead of 1.15 ms at the median through the bitmap (warm), and the
    first search of a LoCoMo customer after a restart was no faster (its rows are few and read once per process).
    """
    return f"({column} = %s OR {column} = -1)"


@dataclass(frozen=True)
class ClusterOutcome:
    table: str
    index: str
    seconds: float


def tables_cluster(*, tables: tuple[str, ...] | None = None) -> list[ClusterOutcome]:
    """Rewrite each table (all, or those named) in its owner order, then ANALYZE it. Returns the timings."""
    known = dict(CLUSTERED_TABLES)
    wanted = tables or tuple(known)
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise ValueError(f"Not a clustered table: {', '.join(unknown)}; choose from {', '.join(sorted(known))}.")
    outcomes = []
    with connection.cursor() as cursor:
        for table in wanted:
            started = time.perf_counter()
            # Table and index names come from the constant above, never from input.
            cursor.execute(f"CLUSTER {table} USING {known[table]}")
            cursor.execute(f"ANALYZE {table}")
            outcomes.append(ClusterOutcome(table, known[table], time.perf_counter() - started))
    return outcomes


# Measuring locality from cold (search_benchmark --reuse SLUG --cold) needs both caches empty: PostgreSQL's
# shared buffers (a restart) and the OS page cache (an eviction).


def _system_user() -> str | None:
    return "pgserver" if os.geteuid() == 0 else None  # as root, pgserver runs PostgreSQL as its own user


def embedded_restart(pgdata: Path) -> None:
    """Restart the embedded PostgreSQL: ``pg_ctl restart`` keeps the options pgserver started it with.

    Shared buffers come back empty and every connection drops (Django reconnects on its next query).
    """
    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

    pg_ctl(["-w", "-m", "fast", "restart"], pgdata=pgdata, user=_system_user(), timeout=120)


def page_cache_evict(pgdata: Path) -> int:
    """Drop the OS page cache of every data file under ``pgdata`` (written back first). Returns files evicted.

    ``posix_fadvise(DONTNEED)`` needs no privilege (``/proc/sys/vm/drop_caches`` is read-only in containers)
    and leaves other programs' cached files alone.
    """
    evicted = 0
    for folder in ("base", "global", "pg_wal"):
        for path in (pgdata / folder).rglob("*"):
            if not path.is_file():
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                evicted += 1
            finally:
                os.close(fd)
    return evicted


@dataclass(frozen=True)
class DiskProbe:
    reads: int
    p50_us: float
    p95_us: float
    over_1ms: int  # reads that took longer than a millisecond


def disk_probe(files: list[Path], *, reads: int = 200, seed: int = 0) -> DiskProbe:
    """Time ``reads`` random 8 kB reads of these files, each from the disk (the file is dropped from the OS page cache
    and read without readahead): how fast the disk answers the scattered reads of a cold search, right now. A virtual
    disk's random reads can be ten times slower for minutes after a large write (docs/performance.md, session 13).
    The files stay out of the page cache."""
    rng = random.Random(seed)
    handles = [os.open(path, os.O_RDONLY) for path in files]
    try:
        sized = [(fd, os.fstat(fd).st_size // 8192) for fd in handles]
        sized = [(fd, pages) for fd, pages in sized if pages > 0]
        if not sized:
            raise ValueError("no file to read: every file is empty")
        for fd, _ in sized:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        timings = []
        for _ in range(reads):
            fd, pages = rng.choice(sized)
            started = time.perf_counter()
            os.pread(fd, 8192, rng.randrange(pages) * 8192)
            timings.append((time.perf_counter() - started) * 1e6)
        for fd, _ in sized:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_NORMAL)
    finally:
        for fd in handles:
            os.close(fd)
    timings.sort()
    return DiskProbe(
        reads=reads,
        p50_us=statistics.median(timings),
        p95_us=timings[min(reads - 1, int(0.95 * reads))],
        over_1ms=sum(1 for value in timings if value > 1000),
    )
