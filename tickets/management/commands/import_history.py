"""python manage.py import_history --org SLUG (--integration KIND | --file F.ndjson) [--since D] [--until D]
[--limit N] [--dry-run] [--no-consolidate]: import a helpdesk's history, resumable; progress bar on stderr."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from datetime import time as day_start
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_date, parse_datetime

from tickets.helpdesks.history import ImportSourceError
from tickets.imports import (
    DryRunReport,
    FileReader,
    ImportBusy,
    history_reader_for,
    import_dry_run,
    import_figures,
    import_job_run,
    import_job_start,
)
from tickets.models import ImportJob, Integration, Organization


def parse_when(value: str | None) -> datetime | None:
    """A date (midnight UTC) or an ISO 8601 time; naive times are UTC."""
    if not value:
        return None
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"not a date or ISO 8601 time: {value!r}")
        moment = datetime.combine(day, day_start())
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class ProgressBar:
    """One line on stderr, redrawn in place on a terminal (every 2 s as plain lines elsewhere)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.last = 0.0

    def job(self, job: ImportJob, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < (0.2 if self.tty else 2.0):
            return
        self.last = now
        figures = import_figures(job)
        total: int | None
        if job.status == ImportJob.Status.CONSOLIDATING:
            done, total, unit = job.consolidations_done, job.consolidations_total, "consolidations"
        else:
            total = min(filter(None, [job.tickets_total, job.limit]), default=None)
            done, unit = job.tickets_done + job.errors, "tickets"
        bar = _bar(done, total)
        rate = f"{figures.messages_per_second:.0f} msg/s" if figures.messages_per_second else "- msg/s"
        eta = f" ETA {_duration(figures.eta_seconds)}" if figures.eta_seconds is not None else ""
        line = (
            f"{bar} {done}{'/' + str(total) if total else ''} {unit} · {job.messages_done} messages · {rate}"
            f" · {job.errors} errors{eta}"
        )
        self._write(line, final)

    def dry(self, report: DryRunReport) -> None:
        now = time.monotonic()
        if now - self.last < (0.2 if self.tty else 2.0):
            return
        self.last = now
        line = f"reading… {report.tickets} tickets · {report.messages} messages · {len(report.errors)} errors"
        self._write(line, False)

    def _write(self, line: str, final: bool) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _bar(done: int, total: int | None, width: int = 24) -> str:
    if not total:
        return "[" + "·" * width + "]"
    filled = min(width, round(width * done / total))
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class Command(BaseCommand):
    help = "Import a helpdesk's history (through its API) or an NDJSON file. Resumable and idempotent."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="organisation slug")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--integration", choices=[k.value for k in Integration.Kind], help="helpdesk kind")
        source.add_argument("--file", help="NDJSON file, one ticket with its messages per line (docs/import.md)")
        parser.add_argument("--since", help="only tickets updated at or after this date/time")
        parser.add_argument("--until", help="only tickets updated at or before this date/time")
        parser.add_argument("--limit", type=int, help="stop after this many tickets")
        parser.add_argument("--dry-run", action="store_true", help="read everything, store nothing, estimate cost")
        parser.add_argument("--no-consolidate", action="store_true", help="import messages only, no memory runs")

    def handle(self, *args: Any, **options: Any) -> None:
        organization = Organization.objects.filter(slug=options["org"]).first()
        if organization is None:
            raise CommandError(f"no organisation with slug {options['org']!r}")
        since, until = parse_when(options["since"]), parse_when(options["until"])
        if options["limit"] is not None and options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        integration = None
        if options["integration"]:
            integration = Integration.objects.filter(organization=organization, kind=options["integration"]).first()
            if integration is None:
                kind = options["integration"]
                raise CommandError(f"{organization.slug} has no {kind} integration (see create_integration)")
        source_file = str(Path(options["file"]).resolve()) if options["file"] else ""
        progress = ProgressBar(self.stderr._out)
        try:
            if options["dry_run"]:
                reader = history_reader_for(integration) if integration else FileReader(Path(source_file))
                report = import_dry_run(
                    organization=organization,
                    reader=reader,
                    since=since,
                    until=until,
                    limit=options["limit"],
                    consolidate=not options["no_consolidate"],
                    progress=progress.dry,
                )
                self._print_dry_run(report, consolidate=not options["no_consolidate"])
                return
            job, resumed = import_job_start(
                organization=organization,
                integration=integration,
                source_file=source_file,
                since=since,
                until=until,
                limit=options["limit"],
                consolidate=not options["no_consolidate"],
            )
            self.stdout.write(f"{'Resuming' if resumed else 'Starting'} import #{job.pk}")
            job = self._run(job, progress)
        except ImportBusy as exc:
            raise CommandError(str(exc)) from None
        except ImportSourceError as exc:
            raise CommandError(f"import stopped: {exc}") from None
        progress.job(job, final=True)
        self._print_result(job)

    def _run(self, job: ImportJob, progress: ProgressBar) -> ImportJob:
        """In-process without a broker; with one, as a Celery task this command watches."""
        from tickets.tasks import import_history_task

        if not settings.REDIS_URL or settings.CELERY_TASK_ALWAYS_EAGER:
            return import_job_run(job_id=job.pk, progress=progress.job)
        import_history_task.apply_async(args=[job.pk], retry=False)
        while True:
            time.sleep(1)
            job.refresh_from_db()
            progress.job(job)
            if job.status in (ImportJob.Status.FINISHED, ImportJob.Status.FAILED) and job.heartbeat_at:
                if job.status == ImportJob.Status.FAILED:
                    raise ImportSourceError(job.last_error)
                return job

    def _print_result(self, job: ImportJob) -> None:
        figures = import_figures(job)
        self.stdout.write(
            f"Import #{job.pk} {job.status}: {job.tickets_done} tickets, {job.messages_done} messages, "
            f"{job.errors} errors, {job.consolidations_done} consolidations in {figures.elapsed_seconds:.1f}s"
        )
        for entry in job.error_log[:20]:
            self.stdout.write(f"  {entry['where']}: {entry['error']}")
        if job.errors > 20:
            self.stdout.write(f"  … {job.errors - 20} more (admin: the import's page)")

    def _print_dry_run(self, report: DryRunReport, *, consolidate: bool) -> None:
        self.stdout.write(
            f"Dry run: {report.tickets} tickets, {report.messages} messages, {report.solved} solved, "
            f"{len(report.errors)} errors; nothing stored."
        )
        for error in report.errors[:20]:
            self.stdout.write(f"  {error}")
        if not consolidate:
            self.stdout.write("Consolidation: off (--no-consolidate).")
            return
        estimate = report.estimate
        if not estimate:
            self.stdout.write(f"Consolidation: {report.solved} runs (no estimate available).")
        elif estimate.get("offline"):
            self.stdout.write(
                f"Consolidation: {estimate['runs']} runs with the offline model ({estimate['model']}): no tokens spent."
            )
        else:
            self.stdout.write(
                f"Consolidation: {estimate['runs']} runs with {estimate['model']}: about "
                f"{estimate['prompt_tokens']} prompt tokens and {estimate['completion_tokens']} completion tokens."
            )
        sys.stdout.flush()
