"""Synthetic archival passages for the search benchmark, written with binary COPY.

A million passages of 384-dimensional vectors are about 1.6 GB on the wire: formatting them as text rows in
Python took longer than the HNSW build. Here each chunk of rows is one numpy record array in PostgreSQL's
binary COPY layout (big-endian lengths and values; pgvector's binary vector is a 16-bit dimension count, 16
unused bits and the floats), and only the variable text is joined per row.

Vectors are random unit vectors by default: cheap, but the worst case for an HNSW index (no neighbourhoods to
find, so its search wanders and its cost says little about real embeddings'). ``PassagePlan.embed`` gives each
row its own text's embedding instead (the configured model; about half an hour for a million on two cores).

Rows are written in customer order by default, so each customer's passages land on contiguous heap pages as
``cluster_tables`` would leave them; ``interleaved=True`` writes them round-robin across customers, the order
live traffic produces.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from django.db import connection

from memory.models import EMBEDDING_DIMENSIONS

COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)  # no OIDs, no header extension
COPY_TRAILER = struct.pack(">h", -1)
_POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_VARCHAR_OID = 1043
COLUMNS = (
    "organization_id",
    "customer_id",
    "created_at",
    "staff_only",
    "change_source",
    "embedding_model",
    "tags",
    "text_hash",
    "embedding",
    "text",
)


@dataclass(frozen=True)
class PassagePlan:
    """What to generate: ``size`` passages of one organisation over ``customer_ids``."""

    organization_id: int
    customer_ids: Sequence[int]
    size: int
    per_customer: int
    model: str
    words: Sequence[str]
    seed: int = 0
    interleaved: bool = False
    # The texts' own embeddings instead of random unit vectors (an embedder's ``embed``).
    embed: Callable[[list[str]], Sequence[Sequence[float]]] | None = None


def _row_dtype(model: bytes) -> np.dtype:
    return np.dtype(
        [
            ("fields", ">i2"),
            ("organization_len", ">i4"),
            ("organization", ">i8"),
            ("customer_len", ">i4"),
            ("customer", ">i8"),
            ("created_len", ">i4"),
            ("created", ">i8"),  # microseconds since 2000-01-01 UTC
            ("staff_len", ">i4"),
            ("staff", "u1"),
            ("source_len", ">i4"),
            ("source", "S6"),
            ("model_len", ">i4"),
            ("model", f"S{len(model)}"),
            ("tags_len", ">i4"),
            ("tags", ">i4", (3,)),  # an empty array: no dimensions, no nulls, element type varchar
            ("hash_len", ">i4"),
            ("hash", "S32"),
            ("vector_len", ">i4"),
            ("dimensions", ">u2"),
            ("unused", ">u2"),
            ("vector", ">f4", (EMBEDDING_DIMENSIONS,)),
            ("text_len", ">i4"),  # the text itself follows, of this many bytes
        ]
    )


def customer_index(plan: PassagePlan, numbers: np.ndarray) -> np.ndarray:
    """Which customer (position in ``plan.customer_ids``) row ``numbers`` belong to."""
    count = len(plan.customer_ids)
    if plan.interleaved:
        return numbers % count
    return np.minimum(numbers // plan.per_customer, count - 1)


def copy_chunks(plan: PassagePlan, *, chunk_rows: int = 20_000) -> Iterator[bytes]:
    """The binary COPY stream for ``plan``: the signature, chunks of rows, the trailer."""
    model = plan.model.encode()
    if not model or not plan.customer_ids or plan.size < 1:
        raise ValueError("a passage plan needs a model name, customers and a positive size")
    rng = np.random.default_rng(plan.seed)
    dtype = _row_dtype(model)
    customers = np.asarray(plan.customer_ids, dtype=np.int64)
    words = [word.encode() for word in plan.words]
    start_us = int((datetime.now(UTC) - _POSTGRES_EPOCH).total_seconds()) * 1_000_000 - plan.size * 1_000_000
    yield COPY_SIGNATURE
    for start in range(0, plan.size, chunk_rows):
        count = min(chunk_rows, plan.size - start)
        numbers = np.arange(start, start + count, dtype=np.int64)
        rows = np.zeros(count, dtype=dtype)
        rows["fields"] = len(COLUMNS)
        rows["organization_len"] = rows["customer_len"] = rows["created_len"] = 8
        rows["organization"] = plan.organization_id
        rows["customer"] = customers[customer_index(plan, numbers)]
        rows["created"] = start_us + numbers * 1_000_000  # one a second, oldest first
        rows["staff_len"] = 1
        rows["source_len"], rows["source"] = 6, b"system"
        rows["model_len"], rows["model"] = len(model), model
        rows["tags_len"], rows["tags"] = 12, (0, 0, _VARCHAR_OID)
        rows["hash_len"] = 32
        rows["hash"] = np.frombuffer(rng.bytes(16 * count).hex().encode(), dtype="S32")
        vectors = rng.standard_normal((count, EMBEDDING_DIMENSIONS), dtype=np.float32)
        picks = rng.integers(0, len(words), size=(count, 10))
        texts = [
            b" ".join([words[i] for i in pick]) + b" #%d" % number
            for pick, number in zip(picks.tolist(), numbers.tolist(), strict=True)
        ]
        if plan.embed is not None:
            vectors = np.asarray(plan.embed([text.decode() for text in texts]), dtype=np.float32)
            if vectors.shape != (count, EMBEDDING_DIMENSIONS):
                raise ValueError(f"the embedder gave {vectors.shape} vectors for {count} texts")
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        rows["vector_len"] = 4 + 4 * EMBEDDING_DIMENSIONS
        rows["dimensions"] = EMBEDDING_DIMENSIONS
        rows["vector"] = vectors
        rows["text_len"] = [len(text) for text in texts]
        fixed = rows.view(np.uint8).data
        width = dtype.itemsize
        parts: list[bytes | memoryview] = []
        for offset, text in enumerate(texts):
            parts.append(fixed[offset * width : (offset + 1) * width])
            parts.append(text)
        yield b"".join(parts)
    yield COPY_TRAILER


def passages_copy(plan: PassagePlan) -> None:
    """COPY the plan's passages into memory_archivalpassage (one statement: all rows or none)."""
    connection.ensure_connection()
    raw = connection.connection
    sql = f"COPY memory_archivalpassage ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
    with raw.cursor() as cursor, cursor.copy(sql) as copy:
        for chunk in copy_chunks(plan):
            copy.write(chunk)
