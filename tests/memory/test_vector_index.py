"""Cosine nearest-neighbour search over archival passages uses the HNSW index and finds the right rows."""

from __future__ import annotations

import random

from django.db import connection
from pgvector.django import CosineDistance

from memory.models import EMBEDDING_DIMENSIONS, ArchivalPassage, content_hash


def _unit(vector: list[float]) -> list[float]:
    norm = sum(x * x for x in vector) ** 0.5
    return [x / norm for x in vector]


def test_cosine_neighbour_query_uses_hnsw_and_returns_nearest(actors):
    rng = random.Random(7)
    rows = []
    for i in range(400):
        vector = _unit([rng.gauss(0, 1) for _ in range(EMBEDDING_DIMENSIONS)])
        rows.append(
            ArchivalPassage(
                organization=actors.org,
                customer=actors.customer,
                text=f"passage {i}",
                text_hash=content_hash(f"passage {i}"),
                embedding=vector,
                embedding_model="test",
            )
        )
    ArchivalPassage.objects.bulk_create(rows)
    target = rows[123]
    # A query vector very close to passage 123, and another close to 7.
    query = _unit([x + rng.gauss(0, 0.01) for x in target.embedding])

    nearest = ArchivalPassage.objects.order_by(CosineDistance("embedding", query))
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # 400 rows: make the planner show its index choice
        sql, params = nearest[:5].query.sql_with_params()
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        assert "passage_embedding_hnsw" in plan, plan
        cursor.execute(sql, params)
        ids = [row[0] for row in cursor.fetchall()]
    assert ids[0] == target.pk
    assert list(nearest.values_list("pk", flat=True)[:1]) == [target.pk]
