"""Celery tasks that embed messages and passages: thin wrappers that take primary keys and call one service.

They are queued after commit by memory.receivers. A task that cannot be queued (broker down) or that fails
for good leaves its rows without an embedding, which the sweeper (``embed_pending``) picks up later; until
then the rows are found by full text.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
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


@shared_task(name="memory.embed_pending", ignore_result=True, **_RETRY)
def embed_pending_task(organization_id: int | None = None) -> dict[str, int]:
    """Embed whatever has no embedding yet (a demo load, a lost task); also run periodically by beat."""
    outcome = embeddings_embed_pending(organization_id=organization_id)
    return {"messages": outcome.messages, "passages": outcome.passages}


def dispatch(task: Task, *args: Any) -> bool:
    """Queue a task; never fail the caller (the message is stored already, and the sweeper catches up)."""
    try:
        task.apply_async(args=args, retry=False)
    except Exception as exc:  # kombu and redis raise several types; all mean "not queued"
        logger.warning("could not queue %s (%s); embed_pending will pick the rows up", task.name, exc)
        return False
    return True
