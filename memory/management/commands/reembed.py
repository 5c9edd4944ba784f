"""Re-embed what another embedding model made, so every vector lives in the configured model's space.

Batches commit one by one and the rows still to do are found again by their recorded model, so an
interrupted run simply resumes where it stopped when started again.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper

from memory.embeddings import (
    DEFAULT_BATCH_SIZE,
    EmbeddingError,
    embedder_get,
    embeddings_reembed,
    stale_messages,
    stale_passages,
)
from memory.management.commands.embed_pending import organization_id_for


class Progress:
    """A one-line progress bar on stderr: rows done of rows to do, rate, and time left."""

    def __init__(self, stream: OutputWrapper, total: int) -> None:
        self.stream, self.total, self.done, self.started = stream, total, 0, time.monotonic()

    def __call__(self, kind: str, count: int) -> None:
        self.done += count
        share = self.done / self.total if self.total else 1.0
        rate = self.done / max(time.monotonic() - self.started, 1e-6)
        left = (self.total - self.done) / rate if rate else 0.0
        bar = "#" * int(share * 30)
        self.stream.write(f"\r[{bar:<30}] {self.done}/{self.total} {kind} {rate:.0f}/s {left:.0f}s left", ending="")
        self.stream.flush()


class Command(BaseCommand):
    help = "Re-embed messages and passages whose recorded embedding model is not the configured one."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", help="only this organisation (slug)")
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        organization_id = organization_id_for(options["org"])
        try:
            model = embedder_get().name
            total = (
                stale_messages(model=model, organization_id=organization_id).count()
                + stale_passages(model=model, organization_id=organization_id).count()
            )
            self.stdout.write(f"{total} rows to re-embed with {model}")
            outcome = embeddings_reembed(
                organization_id=organization_id, batch_size=options["batch_size"], progress=Progress(self.stderr, total)
            )
        except EmbeddingError as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write("")
        self.stdout.write(f"re-embedded {outcome.messages} messages and {outcome.passages} passages with {model}")
