"""Embed every message and passage that has no embedding yet (after a bulk load, or to catch up), then the sentences
of those embedded before sentences were (docs/recall.md, step 7)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from memory.embeddings import DEFAULT_BATCH_SIZE, EmbeddingError, embeddings_embed_pending
from tickets.models import Organization


class Command(BaseCommand):
    help = "Embed messages and archival passages that have no embedding (or no sentence embeddings) yet, in batches."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", help="only this organisation (slug)")
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)

    def handle(self, *args: Any, **options: Any) -> None:
        organization_id = organization_id_for(options["org"])
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        try:
            outcome = embeddings_embed_pending(organization_id=organization_id, batch_size=options["batch_size"])
        except EmbeddingError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"embedded {outcome.messages} messages and {outcome.passages} passages")


def organization_id_for(slug: str | None) -> int | None:
    if not slug:
        return None
    organization = Organization.objects.filter(slug=slug).first()
    if organization is None:
        raise CommandError(f"No organisation with slug {slug!r}.")
    return organization.pk
