"""Rewrite passages, messages and message vectors in organisation/customer order (see memory/locality.py)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from memory.locality import CLUSTERED_TABLES, tables_cluster


class Command(BaseCommand):
    help = (
        "CLUSTER passages, messages and message embeddings by organisation/customer so one customer's rows "
        "share a few heap pages. Locks each table while it is rewritten: run it in a maintenance window."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--table",
            action="append",
            choices=[table for table, _ in CLUSTERED_TABLES],
            help="only this table (repeatable); default all",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            outcomes = tables_cluster(tables=tuple(options["table"]) if options["table"] else None)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        for outcome in outcomes:
            self.stdout.write(f"{outcome.table}: clustered by {outcome.index} in {outcome.seconds:.1f}s")
