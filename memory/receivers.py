"""Memory subscribes to what is stored: every new message and passage gets its embedding after commit."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from memory.signals_out import passage_saved
from memory.tasks import embeddings_enqueue
from tickets.signals import message_ingested


@receiver(message_ingested, dispatch_uid="memory.embed_new_message")
def embed_new_message(sender: Any, message_id: int, **kwargs: Any) -> None:
    embeddings_enqueue("messages", [message_id])


@receiver(passage_saved, dispatch_uid="memory.embed_saved_passage")
def embed_saved_passage(sender: Any, passage_id: int, **kwargs: Any) -> None:
    embeddings_enqueue("passages", [passage_id])
