"""Memory subscribes to what is stored: every new message and passage gets its embedding after commit."""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import receiver

from memory.embeddings import EmbeddingError, embedder_get, embeddings_embed_pending, message_embeddings_compute
from memory.signals_out import passage_saved
from memory.tasks import embeddings_enqueue
from tickets.signals import import_finished, message_ingested, messages_imported

logger = logging.getLogger(__name__)
# Texts per model call when embedding an import: the embedder sorts a call's texts by length before padding
# them in batches, so a bigger call pads less (and reads and writes the rows in fewer queries).
IMPORT_EMBED_BATCH = 256


@receiver(message_ingested, dispatch_uid="memory.embed_new_message")
def embed_new_message(sender: Any, message_id: int, **kwargs: Any) -> None:
    embeddings_enqueue("messages", [message_id])


@receiver(passage_saved, dispatch_uid="memory.embed_saved_passage")
def embed_saved_passage(sender: Any, passage_id: int, **kwargs: Any) -> None:
    embeddings_enqueue("passages", [passage_id])


@receiver(messages_imported, dispatch_uid="memory.embed_imported_messages")
def embed_imported_messages(sender: Any, message_ids: list[int], **kwargs: Any) -> int:
    """A history import embeds what it stored in bulk, in its own process, batch by batch: the whole texts, their
    sentences later by the periodic sweep (memory/tasks.py). A failure leaves the messages for ``embed_pending`` (they
    are found by full text meanwhile) rather than stopping the import."""
    embedder = embedder_get()
    done = 0
    for start in range(0, len(message_ids), IMPORT_EMBED_BATCH):
        batch = message_ids[start : start + IMPORT_EMBED_BATCH]
        try:
            done += message_embeddings_compute(message_ids=batch, embedder=embedder, sentences=False)
        except EmbeddingError as exc:
            logger.warning("could not embed %d imported messages (%s); embed_pending will", len(batch), exc)
    return done


@receiver(import_finished, dispatch_uid="memory.embed_after_import")
def embed_after_import(sender: Any, organization_id: int, **kwargs: Any) -> None:
    """Messages a killed import stored but did not embed yet (their sentences, like the others', are the sweep's)."""
    embeddings_embed_pending(organization_id=organization_id, sentence_rows=0)
