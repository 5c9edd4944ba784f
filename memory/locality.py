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

import time
from dataclasses import dataclass

from django.db import connection

# (table, index it is ordered by): passages by organisation, customer, time; messages and their vectors by
# customer (a customer belongs to one organisation).
CLUSTERED_TABLES: tuple[tuple[str, str], ...] = (
    ("memory_archivalpassage", "passage_owner_time"),
    ("memory_messageembedding", "message_embedding_customer"),
    ("tickets_ticketmessage", "message_customer_time"),
)


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
