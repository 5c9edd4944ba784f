"""Memory subscribes to what is stored: every new message and passage gets its embedding after commit."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from memory.signals_out import passage_saved
from memory.tasks import dispatch, embed_pending_task, embeddings_enqueue
from tickets.signals import demo_seeded, message_ingested


@receiver(message_ingested, dispatch_uid="memory.embed_new_message")
def embed_new_message(sender: Any, message_id: int, **kwargs: Any) -> None:
    embeddings_enqueue("messages", [message_id])


@receiver(passage_saved, dispatch_uid="memory.embed_saved_passage")
def embed_saved_passage(sender: Any, passage_id: int, **kwargs: Any) -> None:
    embeddings_enqueue("passages", [passage_id])


@receiver(demo_seeded, dispatch_uid="memory.embed_demo")
def embed_demo(sender: Any, organization_id: int, **kwargs: Any) -> None:
    """The demo's history is bulk-loaded without announcements: embed all of it in batches."""
    dispatch(embed_pending_task, organization_id)
