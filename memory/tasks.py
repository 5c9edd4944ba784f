"""Celery tasks that embed messages and passages: thin wrappers that take primary keys and call one service.

Rows are queued after commit by memory.receivers through ``embeddings_enqueue``. With a broker, new ids wait
in a Redis list for EMBED_BATCH_WINDOW seconds and one ``memory.embed_queued`` task embeds everything that
arrived meanwhile in batches of EMBED_BATCH_MAX (one model call each, not one per message). Without a broker
(tasks in-process) they are embedded at once. A task that cannot be queued (broker down) or that fails for
good leaves its rows without an embedding, which the sweeper (``embed_pending``) picks up later; until then
the rows are found by full text.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import Task, current_app, shared_task
from django.conf import settings
from django.db import OperationalError

from memory.embeddings import (
    EmbeddingError,
    embeddings_embed_pending,
    message_embeddings_compute,
    passage_embeddings_compute,
)

logger = logging.getLogger(__name__)

# A provider outage or a database hiccup is worth a few retries; anything else is a bug to log.
_RETRY = {"autoretry_for": (EmbeddingError, OperationalError), "retry_backoff": True, "max_retries": 5}


@shared_task(name="memory.embed_messages", ignore_result=True, acks_late=True, **_RETRY)
def embed_messages_task(message_ids: list[int]) -> int:
    return message_embeddings_compute(message_ids=message_ids)


@shared_task(name="memory.embed_passages", ignore_result=True, acks_late=True, **_RETRY)
def embed_passages_task(passage_ids: list[int]) -> int:
    return passage_embeddings_compute(passage_ids=passage_ids)


# Ids that arrive within this many seconds share one task; a task embeds at most this many per model call.
EMBED_BATCH_WINDOW = 1.0
EMBED_BATCH_MAX = 128
KINDS = ("messages", "passages")
_CLIENTS: dict[str, redis.Redis] = {}


def _keys(kind: str) -> tuple[str, str]:
    return f"supportmem:embed:{kind}:queue", f"supportmem:embed:{kind}:scheduled"


def _redis() -> redis.Redis:
    url = settings.REDIS_URL
    if url not in _CLIENTS:
        _CLIENTS[url] = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    return _CLIENTS[url]


def embeddings_enqueue(kind: str, ids: list[int]) -> None:
    """Have these rows embedded soon, together with whatever else arrives within EMBED_BATCH_WINDOW."""
    if kind not in KINDS:
        raise ValueError(f"unknown embedding kind {kind!r}")
    direct = embed_messages_task if kind == "messages" else embed_passages_task
    if not settings.REDIS_URL or current_app.conf.task_always_eager:
        dispatch(direct, ids)  # in-process: embedded now
        return
    queue, scheduled = _keys(kind)
    try:
        client = _redis()
        client.rpush(queue, *ids)
        # The first id of a window schedules the task; the flag expires in case that task is lost.
        first = client.set(scheduled, "1", nx=True, ex=int(EMBED_BATCH_WINDOW) + 300)
        if first and not dispatch(embed_queued_task, kind, countdown=EMBED_BATCH_WINDOW):
            client.delete(scheduled)
    except redis.RedisError as exc:
        logger.warning("could not queue %s for embedding (%s); embed_pending will pick them up", kind, exc)


@shared_task(name="memory.embed_queued", ignore_result=True, acks_late=True, **_RETRY)
def embed_queued_task(kind: str) -> int:
    """Embed every queued id of ``kind``, EMBED_BATCH_MAX per model call. A failed batch goes back on the list."""
    if kind not in KINDS:
        raise ValueError(f"unknown embedding kind {kind!r}")
    queue, scheduled = _keys(kind)
    client = _redis()
    client.delete(scheduled)  # ids that arrive from now on schedule the next task
    done = 0
    while raw := client.lpop(queue, EMBED_BATCH_MAX):
        ids = sorted({int(value) for value in raw})
        try:
            if kind == "messages":
                done += message_embeddings_compute(message_ids=ids)
            else:
                done += passage_embeddings_compute(passage_ids=ids)
        except Exception:
            client.rpush(queue, *ids)  # retried by this task's retry, or by the next window's task
            raise
    return done


# Each sweep embeds the sentences of at most this many messages and as many passages stored before sentences were
# (docs/recall.md, step 7): after an upgrade, a large install is filled in over many sweeps (about 3 sentences a turn,
# 30,000 short texts: a minute or two of a worker on a 2-core machine) instead of one that runs for hours while the
# next ones start beside it. `manage.py embed_pending` does them all at once.
SENTENCE_ROWS_PER_SWEEP = 10_000


@shared_task(name="memory.embed_pending", ignore_result=True, **_RETRY)
def embed_pending_task(organization_id: int | None = None) -> dict[str, int]:
    """Embed whatever has no embedding yet (a demo load, a lost task); also run periodically by beat."""
    outcome = embeddings_embed_pending(organization_id=organization_id, sentence_rows=SENTENCE_ROWS_PER_SWEEP)
    return {"messages": outcome.messages, "passages": outcome.passages}


def dispatch(task: Task, *args: Any, countdown: float | None = None) -> bool:
    """Queue a task; never fail the caller (the message is stored already, and the sweeper catches up)."""
    try:
        task.apply_async(args=args, retry=False, countdown=countdown)
    except Exception as exc:  # kombu and redis raise several types; all mean "not queued"
        logger.warning("could not queue %s (%s); embed_pending will pick the rows up", task.name, exc)
        return False
    return True
