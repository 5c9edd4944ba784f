"""One customer's message vectors kept in the process: a search's vector features without reading every vector.

``selectors._MESSAGE_VECTOR_FEATURES_SQL`` compares the query's vector with every one of the customer's message
vectors (their similarity and their neighbours' in the conversation rank them), and ``_MESSAGE_SENTENCES_SQL`` the
candidates' sentence vectors. Both read the same vectors search after search until the customer's messages change;
after the kept words (memory/postings.py) they were the longest part of a search (docs/performance.md, session 11).
Here a customer's vectors and sentence vectors of one model are read once, in PostgreSQL's binary form, and a search
asks the database only for a fingerprint: the number, highest id and sum of row versions' transaction ids (``xmin``)
of the customer's messages and the number and versions of their embedding rows. A message's sentences are written in
the transaction that writes its embedding row (memory/embeddings.py), so a new vector or new sentences change the
fingerprint, as does any insert, update, delete or move of a message.

The similarities are pgvector's cosine similarity, computed here in single precision as pgvector does (the sums are
taken in another order: they agree with the statement's to about 1e-7, tests/memory/test_kept_vectors.py).

Each process keeps up to ``KEPT_BYTES`` of vectors, each customer for ``postings.KEPT_SECONDS`` after its last search.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from django.db import connection

from memory import postings
from memory.models import EMBEDDING_DIMENSIONS

KEPT_BYTES = 128 * 2**20

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

# The fingerprint of a customer's messages and of their embedding rows, in one round trip (a search reads it with
# the words' fingerprint: postings.Checked).
_FINGERPRINT_SQL = (
    "SELECT count(*), coalesce(max(m.id), 0), coalesce(sum(m.xmin::text::bigint), 0), "
    "(SELECT count(*) FROM memory_messageembedding e WHERE e.customer_id = %s), "
    "(SELECT coalesce(sum(e.xmin::text::bigint), 0) FROM memory_messageembedding e WHERE e.customer_id = %s) "
    "FROM tickets_ticketmessage m WHERE m.customer_id = %s"
)
# The embedded messages as the vector features' statement joins them, and their sentences (vector_send: a 16-bit
# dimension count, 16 unused bits, then the floats, big-endian).
_VECTORS_SQL = (
    "SELECT m.id, m.ticket_id, m.created_at, m.is_public, vector_send(e.embedding) "
    "FROM memory_messageembedding e JOIN tickets_ticketmessage m ON m.id = e.message_id "
    "AND m.customer_id = e.customer_id WHERE e.customer_id = %s AND e.model = %s"
)
_SENTENCES_SQL = (
    "SELECT s.message_id, vector_send(s.embedding) FROM memory_sentenceembedding s "
    "JOIN tickets_ticketmessage m ON m.id = s.message_id WHERE m.customer_id = %s AND s.model = %s"
)


@dataclass(frozen=True)
class Vectors:
    """One customer's embedded messages (by one model), each at a place; never changed once kept."""

    ids: np.ndarray  # int64
    tickets: np.ndarray  # int64, -1 for a message outside any ticket
    times: np.ndarray  # int64, microseconds since 1970 (UTC)
    public: np.ndarray  # bool
    matrix: np.ndarray  # float32, one row a message
    norms: np.ndarray  # float32, each row's length
    order: np.ndarray  # the places in conversation order: (ticket, time, id)
    sentences: np.ndarray  # float32, one row a sentence, grouped by owner
    sentence_norms: np.ndarray
    sentence_owners: np.ndarray  # the place of each group's owner
    sentence_starts: np.ndarray  # where each group starts

    @property
    def nbytes(self) -> int:
        return int(sum(getattr(self, name).nbytes for name in self.__dataclass_fields__))

    @classmethod
    def read(cls, customer_id: int, model: str) -> Vectors:
        with connection.cursor() as cursor:
            cursor.execute(_VECTORS_SQL, [customer_id, model])
            rows = cursor.fetchall()
            cursor.execute(_SENTENCES_SQL, [customer_id, model])
            sentence_rows = cursor.fetchall()
        ids = np.array([row[0] for row in rows], dtype=np.int64)
        tickets = np.array([-1 if row[1] is None else row[1] for row in rows], dtype=np.int64)
        times = np.array([(row[2] - _EPOCH) // _MICROSECOND for row in rows], dtype=np.int64)
        matrix = _matrix([row[4] for row in rows])
        place_of = {int(pk): place for place, pk in enumerate(ids)}
        sentence_rows = sorted((place_of[row[0]], row[1]) for row in sentence_rows if row[0] in place_of)
        owners = np.array([place for place, _ in sentence_rows], dtype=np.int64)
        starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]]) if len(owners) else owners
        sentences = _matrix([vector for _, vector in sentence_rows])
        return cls(
            ids=ids,
            tickets=tickets,
            times=times,
            public=np.array([row[3] for row in rows], dtype=bool),
            matrix=matrix,
            norms=np.linalg.norm(matrix, axis=1).astype(np.float32),
            order=np.lexsort((ids, times, tickets)),
            sentences=sentences,
            sentence_norms=np.linalg.norm(sentences, axis=1).astype(np.float32),
            sentence_owners=owners[starts] if len(owners) else owners,
            sentence_starts=starts,
        )

    def similarities(self, vector: list[float]) -> np.ndarray:
        """Each row's cosine similarity to ``vector`` (float64, as pgvector returns ``1 - (a <=> b)``)."""
        return _cosine(self.matrix, self.norms, vector)

    def features(
        self,
        *,
        vector: list[float],
        unnamed: list[float] | None,
        sentence_target: list[float] | None,
        neighbour_weight: float,
        rows_filter: postings.Filter,
    ) -> Features:
        """The vector features of the rows the filter keeps (``Features``), and each one's best sentence's
        similarity to ``sentence_target``."""
        order = self.order[self._kept(rows_filter)[self.order]]
        sims = self.similarities(vector)[order]
        same = self.tickets[order][1:] == self.tickets[order][:-1]  # a row and the one before it share a conversation
        before = np.zeros_like(sims)
        before[1:] = np.where(same, sims[:-1], 0.0)
        after = np.zeros_like(sims)
        after[:-1] = np.where(same, sims[1:], 0.0)
        near = np.maximum(before, after)
        ids = self.ids[order]
        ranked = np.lexsort((-ids, -(sims + neighbour_weight * near)))
        best = np.full(len(self.ids), np.nan)
        if sentence_target is not None and len(self.sentence_starts):
            sentence_sims = _cosine(self.sentences, self.sentence_norms, sentence_target)
            best[self.sentence_owners] = np.maximum.reduceat(sentence_sims, self.sentence_starts)
        return Features(
            ids=ids[ranked],
            sims=sims[ranked],
            near=near[ranked],
            unnamed=self.similarities(unnamed)[order][ranked] if unnamed is not None else None,
            sentence=best[order][ranked],
        )

    def _kept(self, rows_filter: postings.Filter) -> np.ndarray:
        keep = np.ones(len(self.ids), dtype=bool)
        if rows_filter.public_only:
            keep &= self.public
        if rows_filter.start is not None:
            keep &= self.times >= (rows_filter.start - _EPOCH) // _MICROSECOND
        if rows_filter.end is not None:
            keep &= self.times <= (rows_filter.end - _EPOCH) // _MICROSECOND
        return keep


@dataclass(frozen=True)
class Features:
    """The vector features of one search's rows, nearest first (by similarity plus the neighbour weight x the best
    neighbour's similarity; ties: newest id first), as ``selectors._MESSAGE_VECTOR_FEATURES_SQL`` orders them."""

    ids: np.ndarray
    sims: np.ndarray
    near: np.ndarray  # the best similarity of the row before and after it in its conversation (0 when none)
    unnamed: np.ndarray | None  # the similarity to the query without names
    sentence: np.ndarray  # the best similarity of the row's sentences to the sentence target (NaN: no sentences)

    def rows(self, limit: int, wanted: list[int]) -> list[tuple[int, float, float, float | None]]:
        """(id, similarity, best neighbour's similarity, similarity without names) of the ``limit`` nearest rows,
        then of the ``wanted`` rows among the rest, nearest first: the statement's rows."""
        places = np.arange(min(limit, len(self.ids)))
        if wanted and len(self.ids) > limit:
            further = np.flatnonzero(np.isin(self.ids[limit:], np.asarray(wanted, dtype=np.int64))) + limit
            places = np.concatenate([places, further])
        unnamed = self.unnamed[places].tolist() if self.unnamed is not None else [None] * len(places)
        return list(
            zip(self.ids[places].tolist(), self.sims[places].tolist(), self.near[places].tolist(), unnamed, strict=True)
        )

    def sentences(self, ids: list[int]) -> dict[int, float]:
        """The best sentence similarity of each of these rows that has sentences."""
        chosen = np.isin(self.ids, np.asarray(ids, dtype=np.int64)) & ~np.isnan(self.sentence)
        return dict(zip(self.ids[chosen].tolist(), self.sentence[chosen].tolist(), strict=True))


def _matrix(vectors: list[bytes]) -> np.ndarray:
    if not vectors:
        return np.zeros((0, 0), dtype=np.float32)
    joined = np.frombuffer(b"".join(bytes(v)[4:] for v in vectors), dtype=">f4")
    return joined.reshape(len(vectors), -1).astype(np.float32)


def _cosine(matrix: np.ndarray, norms: np.ndarray, vector: list[float]) -> np.ndarray:
    if not len(matrix):
        return np.zeros(0)
    query = np.asarray(vector, dtype=np.float32)
    # Not BLAS (``matrix @ query``): its threads, split over both cores for a few hundred rows, waited for a core
    # the model's run or PostgreSQL held (a search's p95 of this step 5.7 ms against 0.7 at the median).
    dots = np.einsum("ij,j->i", matrix, query)
    lengths = norms.astype(np.float64) * float(np.linalg.norm(query))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(lengths > 0, dots / np.where(lengths > 0, lengths, 1.0), np.nan)


_kept: postings.Kept[Vectors] = postings.Kept(lambda: KEPT_BYTES, lambda vectors: vectors.nbytes)
# Customers (and models) whose vectors were read once and found larger than KEPT_BYTES, with their number of embedded
# messages then: the statements serve them until they have fewer (reading them on every search would cost more).
_too_large: dict[tuple[int, int], int] = {}


def checked(customer_id: int, model: str, fingerprint: tuple[int, ...] | None = None) -> Vectors | None:
    """The customer's message vectors by ``model`` as they are now (read, or kept and checked by their fingerprint:
    ``fingerprint`` when it was just read, postings.Checked's); None when they have no messages, or more vectors than
    a process keeps (``KEPT_BYTES``)."""
    key = (customer_id, hash(model))
    kept = _kept.get(key)
    if fingerprint is None:
        with connection.cursor() as cursor:
            cursor.execute(_FINGERPRINT_SQL, [customer_id, customer_id, customer_id])
            fingerprint = tuple(cursor.fetchone())
    if not fingerprint[0]:
        _kept.forget(customer_id)
        return None
    embedded = fingerprint[3]
    if embedded * EMBEDDING_DIMENSIONS * 4 > KEPT_BYTES or embedded >= _too_large.get(key, embedded + 1):
        return None  # more than a process keeps
    stamp = (*fingerprint, model)
    if kept is not None and kept[0] == stamp:
        return kept[1]
    vectors = Vectors.read(customer_id, model)
    if vectors.nbytes > KEPT_BYTES:
        _too_large[key] = embedded
    _kept.put(key, stamp, vectors)
    return vectors


def kept_clear() -> None:
    """Forget every customer's vectors (tests; a process that wants its memory back)."""
    _kept.clear()
    _too_large.clear()


def kept_forget(customer_id: int) -> None:
    """Forget one customer's vectors in this process (their messages were erased)."""
    _kept.forget(customer_id)
    for key in [key for key in _too_large if key[0] == customer_id]:
        _too_large.pop(key, None)
