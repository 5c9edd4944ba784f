"""History import: a helpdesk's past tickets (through its API) or an NDJSON file, stored through the same
idempotent ingestion path as webhooks, resumable after a kill at any point.

How exactly-once holds: tickets are stored in the source's order, a batch of them per transaction together with
their messages, their ``ImportedTicket`` links, the job's counters and the checkpoint (the page being read and
how many of its tickets are done). A process killed anywhere either committed a batch with its checkpoint or
neither; the restarted import re-reads the page from the checkpoint and skips the tickets already done. Reading
runs ahead of storing (a pool of threads fetches the next tickets' messages), but what was read and not stored
is simply read again. Messages are unique on (ticket, external id) in the database, so even a ticket stored
twice (by the import and a webhook, or by an incremental export that lists an updated ticket again) keeps each
message once.

The tickets layer knows nothing of embeddings or the agent: it announces the stored messages in batches
(``messages_imported``; memory embeds them in bulk) from a thread of its own, so embedding overlaps reading and
storing; once everything is in, it asks for the consolidation of the solved tickets per customer, oldest first
(``imported_tickets_consolidate``; the agent layer runs them).
Imported messages are never announced as new messages, so the agent never answers them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from itertools import groupby
from pathlib import Path
from queue import Queue
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from tickets.helpdesks.base import CustomerRef, MessageData, NormalisedEvent, PayloadError, when
from tickets.helpdesks.history import HistoryPage, HistoryReader, ImportSourceError, ItemError
from tickets.models import ImportedTicket, ImportJob, Integration, Organization, Ticket, TicketMessage
from tickets.services import TicketChanges, customer_resolve, messages_ingest_bulk, ticket_upsert
from tickets.signals import consolidation_estimate, import_finished, imported_tickets_consolidate, messages_imported

logger = logging.getLogger(__name__)

SCHEMA_PATH = Path(__file__).resolve().parent / "import_schema.json"
FILE_SOURCE = "api"  # a file's customer ids share the namespace of the REST API's external ids
ERROR_LOG_MAX = 200
FETCH_WORKERS = 8  # tickets whose messages are read at once (a reader may say fewer: ``fetch_workers``)
FETCH_RAMP = 16  # the read-ahead widens by one ticket every this many tickets stored
STORE_BATCH = 50  # tickets stored per transaction at most (only those already read: no transaction waits)
EMBED_EVERY = 512  # messages stored between two bulk embeddings
EMBED_QUEUE = 2  # batches waiting for the embedder before the store loop waits for it
_UNFINISHED = (
    ImportJob.Status.QUEUED,
    ImportJob.Status.RUNNING,
    ImportJob.Status.CONSOLIDATING,
    ImportJob.Status.FAILED,
)
_SOLVED = (Ticket.Status.SOLVED, Ticket.Status.CLOSED)


def history_reader_for(integration: Integration) -> HistoryReader:
    """The reader of an integration's helpdesk (``Helpdesk.history_reader`` in its module)."""
    from tickets.helpdesks import HELPDESKS

    helpdesk = HELPDESKS.get(integration.kind)
    if helpdesk is None or helpdesk.history_reader is None:
        known = ", ".join(history_reader_kinds()) or "none"
        raise ImportSourceError(f"reading the history of {integration.kind} is not supported (readers: {known})")
    return helpdesk.history_reader(integration)


def history_reader_kinds() -> list[str]:
    from tickets.helpdesks import HELPDESKS

    return sorted(kind for kind, helpdesk in HELPDESKS.items() if helpdesk.history_reader is not None)


# ---------------------------------------------------------------- the NDJSON file reader


@cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))


def _schema_message(error: Any) -> str:
    """A jsonschema error as a person reads it: where in the ticket, and what is wrong."""
    where = ".".join(str(part) for part in error.absolute_path) or "ticket"
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        label = "unknown customer field" if where == "customer" else f"unknown field in {where}"
        return f"{label}{'s' if len(extra) > 1 else ''} {', '.join(repr(name) for name in extra)}"
    if error.validator == "required":
        return f"{where}: {error.message}"
    return f"{where}: {error.message}"


class FileReader:
    """Reads an NDJSON export: one ticket with its messages per line (schema: tickets/import_schema.json).

    The cursor is the number of the first line of a page; a page is PAGE_LINES lines."""

    PAGE_LINES = 200

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            raise ImportSourceError(f"no such file: {path}")

    def pages(self, *, cursor: str, since: datetime | None) -> Iterator[HistoryPage]:
        start = int(cursor or 1)
        items: list[tuple[int, str]] = []
        with self.path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if number < start:
                    continue
                items.append((number, raw.decode("utf-8", "replace")))
                if len(items) == self.PAGE_LINES:
                    yield HistoryPage(items=items, next_cursor=str(number + 1), done=False)
                    items = []
        last = items[-1][0] if items else start - 1
        yield HistoryPage(items=items, next_cursor=str(last + 1), done=True)

    def item_key(self, item: Any) -> tuple[str, datetime | None]:
        return f"line {item[0]}", None

    def ticket(self, item: Any) -> NormalisedEvent:
        number, text = item
        where = f"line {number}"
        if not text.strip():
            raise ItemError(where, "empty line")
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ItemError(where, f"not valid JSON ({exc})") from None
        errors = sorted(_validator().iter_errors(data), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
        if errors:
            raise ItemError(where, _schema_message(errors[0]))
        try:
            return _file_event(data)
        except PayloadError as exc:
            raise ItemError(where, str(exc)) from None

    def close(self) -> None:
        return None


def _file_event(data: dict[str, Any]) -> NormalisedEvent:
    customer = data["customer"]
    messages = [
        MessageData(
            external_id=str(message["id"]),
            body=message["body"],
            author_role=message["author"],
            author_name=message.get("author_name", ""),
            is_public=message.get("public", True),
            created_at=when(message["created_at"]),
        )
        for message in data["messages"]
    ]
    return NormalisedEvent(
        event_type="import.file",
        customer=CustomerRef(
            external_id=str(customer["id"]), name=customer.get("name", ""), email=customer.get("email", "").lower()
        ),
        ticket_external_id=str(data["id"]),
        subject=data.get("subject") or None,
        status=data.get("status"),
        priority=data.get("priority"),
        channel=data.get("channel"),
        tags=data.get("tags"),
        created_at=when(data.get("created_at")),
        updated_at=when(data.get("updated_at")) or when(data.get("created_at")),
        messages=messages,
    )


# ---------------------------------------------------------------- jobs


def import_job_start(
    *,
    organization: Organization,
    integration: Integration | None = None,
    source_file: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
    consolidate: bool = True,
) -> tuple[ImportJob, bool]:
    """The job to run: the unfinished import of the same source (resumed, its options kept), or a new one.

    Returns the job and whether it resumes an earlier one."""
    if (integration is None) == (not source_file):
        raise ValueError("an import reads either an integration or a file")
    if integration is not None and integration.organization_id != organization.pk:
        raise ValueError("the integration belongs to another organisation")
    same_source = ImportJob.objects.filter(
        organization=organization, integration=integration, source_file=source_file, status__in=_UNFINISHED
    )
    existing = same_source.order_by("-created_at").first()
    if existing is not None:
        return existing, True
    job = ImportJob.objects.create(
        organization=organization,
        integration=integration,
        source_file=source_file,
        since=since,
        until=until,
        limit=limit,
        consolidate=consolidate,
    )
    return job, False


def reader_for_job(job: ImportJob) -> HistoryReader:
    if job.integration is not None:
        return history_reader_for(job.integration)
    return FileReader(Path(job.source_file))


Progress = Callable[[ImportJob], None]


class ImportBusy(RuntimeError):
    """Another process is running this import right now."""


def import_job_run(
    *,
    job_id: int,
    progress: Progress | None = None,
    reader: HistoryReader | None = None,
    timings: ImportTimings | None = None,
) -> ImportJob:
    """Run (or resume) an import to its end: read and store, then consolidate. Raises ImportSourceError when the
    source cannot be read (the job is marked failed with the reason; starting it again resumes it). ``timings``
    collects where this run's time went (the benchmark prints it)."""
    key = f"supportmem.import:{job_id}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [key])
        if not cursor.fetchone()[0]:
            raise ImportBusy(f"import #{job_id} is running in another process")
    try:
        job = ImportJob.objects.select_related("integration", "organization").get(pk=job_id)
        try:
            if job.status in (ImportJob.Status.QUEUED, ImportJob.Status.RUNNING, ImportJob.Status.FAILED):
                _job_update(job, status=ImportJob.Status.RUNNING, started_at=job.started_at or timezone.now())
                reader = reader or reader_for_job(job)
                try:
                    _import_all(job, reader, progress, timings or ImportTimings())
                finally:
                    reader.close()
                import_finished.send(sender=ImportJob, organization_id=job.organization_id)
                _job_update(job, status=ImportJob.Status.CONSOLIDATING)
            if job.status == ImportJob.Status.CONSOLIDATING:
                if job.consolidate:
                    _consolidate(job, progress)
                _job_update(job, status=ImportJob.Status.FINISHED, finished_at=timezone.now())
        except ImportSourceError as exc:
            _job_update(job, status=ImportJob.Status.FAILED, last_error=str(exc)[:4000])
            raise
        except Exception as exc:
            logger.exception("import #%s failed", job_id)
            _job_update(job, status=ImportJob.Status.FAILED, last_error=f"{type(exc).__name__}: {exc}"[:4000])
            raise
        if progress:
            progress(job)
        return job
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [key])


def _job_update(job: ImportJob, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(job, name, value)
    job.heartbeat_at = timezone.now()
    ImportJob.objects.filter(pk=job.pk).update(heartbeat_at=job.heartbeat_at, **fields)


def _checkpoint(job: ImportJob) -> tuple[str, int]:
    if not job.cursor:
        return "", 0
    state = json.loads(job.cursor)
    return str(state["page"]), int(state["skip"])


@dataclass
class ImportTimings:
    """Where one run of an import spent its time. Fetching (a pool of threads), storing (the caller's thread) and
    embedding (a thread of its own) overlap, so each stage's figure is its busy time and ``wall`` is the whole;
    fetch is summed over the fetching threads. The waits say which stage held the store loop up: a ticket still
    being read (``waited_fetch``), or an embedder that was behind (``waited_embed``)."""

    wall: float = 0.0
    fetch: float = 0.0
    store: float = 0.0
    embed: float = 0.0
    waited_fetch: float = 0.0
    waited_embed: float = 0.0
    fetch_threads: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, stage: str, seconds: float) -> None:
        with self.lock:
            setattr(self, stage, getattr(self, stage) + seconds)


@dataclass
class _Slot:
    """One position of the source, in its order: a ticket stub (``future`` completes it; None when --until skips
    it), or the first or last position of a page (``page`` set, ``item`` None)."""

    cursor: str
    index: int = -1
    item: Any = None
    future: Future[NormalisedEvent] | None = None
    page: HistoryPage | None = None
    page_end: bool = False

    def ready(self) -> bool:
        return self.future is None or self.future.done()


class _ReadAhead:
    """Reads the source ahead of the store loop: the next page while this one's tickets are stored, and up to
    ``workers`` tickets' messages at once (a helpdesk answers each request in tens to hundreds of milliseconds;
    the loop would otherwise wait for every one in turn). Slots come out in the source's order whatever order
    the answers arrive in, so checkpoints mean what they meant when reading one ticket at a time.

    The window starts at one ticket and widens by one every ``FETCH_RAMP`` tickets stored, up to ``workers``:
    a helpdesk's rate limit meets the import's concurrency gradually, and a small import never opens it wide.
    A reader whose ``ticket`` must not run on several threads at once says ``fetch_workers = 1``."""

    def __init__(self, reader: HistoryReader, job: ImportJob, cursor: str, skip: int, timings: ImportTimings) -> None:
        self.reader = reader
        self.job = job
        self.timings = timings
        self.workers = max(1, int(getattr(reader, "fetch_workers", FETCH_WORKERS)))
        timings.fetch_threads = self.workers
        self.pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=f"import-{job.pk}-fetch")
        self.window: deque[_Slot] = deque()
        self.cursor = cursor
        self.skip = skip
        self.page: HistoryPage | None = None
        self.index = 0
        self.pages = reader.pages(cursor=cursor, since=job.since)
        self.upcoming: Future[HistoryPage | None] | None = self.pool.submit(self._timed, next, self.pages, None)

    def __enter__(self) -> _ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        # Tickets read ahead and not stored are dropped: the checkpoint has not passed them.
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _timed(self, call: Callable[..., Any], *args: Any) -> Any:
        began = time.perf_counter()
        try:
            return call(*args)
        finally:
            self.timings.add("fetch", time.perf_counter() - began)

    def _width(self, stored: int) -> int:
        return min(self.workers, 1 + stored // FETCH_RAMP)

    def _fill(self, stored: int, *, block: bool) -> None:
        while len(self.window) < self._width(stored):
            if self.page is None:
                upcoming = self.upcoming
                if upcoming is None:
                    return
                # Wait for a page only with nothing else to store; a failed page is raised in its turn.
                if self.window or (not block and not upcoming.done()):
                    return
                page = upcoming.result()
                self.upcoming = None
                if page is None:
                    return
                if not page.done:
                    self.upcoming = self.pool.submit(self._timed, next, self.pages, None)
                self.page, self.index = page, self.skip
                self.skip = 0
                self.window.append(_Slot(cursor=self.cursor, page=page))
            elif self.index < len(self.page.items):
                item = self.page.items[self.index]
                slot = _Slot(cursor=self.cursor, index=self.index, item=item)
                _, updated = self.reader.item_key(item)
                if self.job.until is None or updated is None or updated <= self.job.until:
                    slot.future = self.pool.submit(self._timed, self.reader.ticket, item)
                self.window.append(slot)
                self.index += 1
            else:
                self.window.append(_Slot(cursor=self.cursor, page=self.page, page_end=True))
                self.cursor = self.page.next_cursor
                self.page = None

    def ready(self, stored: int) -> bool:
        """Whether the next slot can be taken without waiting."""
        self._fill(stored, block=False)
        return bool(self.window) and self.window[0].ready()

    def next(self, stored: int) -> _Slot | None:
        """The next slot in the source's order (waiting for it), or None at the end."""
        self._fill(stored, block=True)
        if not self.window:
            return None
        slot = self.window.popleft()
        if slot.future is not None and not slot.future.done():
            began = time.perf_counter()
            wait([slot.future])
            self.timings.add("waited_fetch", time.perf_counter() - began)
        return slot


class _Embedding:
    """Hands stored messages to memory (``messages_imported``: it embeds them) ``EMBED_EVERY`` at a time, on a
    thread of its own: the model releases the GIL, so it runs while the next tickets are fetched and stored, and
    a queue of ``EMBED_QUEUE`` batches holds the store loop back when the embedder falls behind. An import run
    inside a caller's transaction (tests) embeds inline: another connection would not see its rows."""

    def __init__(self, job: ImportJob, timings: ImportTimings) -> None:
        self.job = job
        self.timings = timings
        self.pending: list[int] = []
        self.error: BaseException | None = None
        self.queue: Queue[list[int] | None] = Queue(maxsize=EMBED_QUEUE)
        self.thread: threading.Thread | None = None
        if not connection.in_atomic_block:
            self.thread = threading.Thread(target=self._work, name=f"import-{job.pk}-embed", daemon=True)
            self.thread.start()

    def __enter__(self) -> _Embedding:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.submit()
        # On failure what is stored and not embedded yet waits for embed_pending (after the import finishes).
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join()
        if exc_type is None and self.error is not None:
            raise self.error

    def add(self, message_ids: list[int]) -> None:
        self.pending.extend(message_ids)
        if len(self.pending) >= EMBED_EVERY:
            self.submit()

    def submit(self) -> None:
        if self.error is not None:
            raise self.error
        ids, self.pending = self.pending, []
        if not ids:
            return
        if self.thread is None:
            self._embed(ids)
            return
        began = time.perf_counter()
        self.queue.put(ids)
        self.timings.add("waited_embed", time.perf_counter() - began)

    def _embed(self, ids: list[int]) -> None:
        began = time.perf_counter()
        messages_imported.send(sender=ImportJob, organization_id=self.job.organization_id, message_ids=ids)
        self.timings.add("embed", time.perf_counter() - began)

    def _work(self) -> None:
        try:
            while (ids := self.queue.get()) is not None:
                if self.error is None:
                    try:
                        self._embed(ids)
                    except BaseException as exc:  # raised in the store loop at its next hand-over
                        self.error = exc
        finally:
            connection.close()  # this thread's own connection


def _import_all(job: ImportJob, reader: HistoryReader, progress: Progress | None, timings: ImportTimings) -> None:
    """Read ahead, store in order a batch of ready tickets per transaction (with the checkpoint), embed behind."""
    page_cursor, skip = _checkpoint(job)
    base = (job.fetch_seconds, job.store_seconds, job.embed_seconds)
    began = time.perf_counter()
    try:
        with _Embedding(job, timings) as embedding, _ReadAhead(reader, job, page_cursor, skip, timings) as ahead:
            while True:
                stored = job.tickets_seen + job.errors
                first = ahead.next(stored)
                if first is None:
                    return
                batch = [first]
                while len(batch) < STORE_BATCH and ahead.ready(stored):
                    slot = ahead.next(stored)
                    if slot is None:
                        break
                    batch.append(slot)
                finished = _store_batch(job, batch, embedding, progress, timings, base)
                if finished:
                    return
    finally:
        timings.wall += time.perf_counter() - began
        _job_update(job, **_seconds(timings, base))


def _seconds(timings: ImportTimings, base: tuple[float, float, float]) -> dict[str, float]:
    return {
        "fetch_seconds": base[0] + timings.fetch,
        "store_seconds": base[1] + timings.store,
        "embed_seconds": base[2] + timings.embed,
    }


def _store_batch(
    job: ImportJob,
    batch: list[_Slot],
    embedding: _Embedding,
    progress: Progress | None,
    timings: ImportTimings,
    base: tuple[float, float, float],
) -> bool:
    """Store a run of slots in one transaction with the checkpoint after the last one taken; returns whether
    the import is over (the source's end, or --limit). A source error stops the batch at its slot: the tickets
    before it are committed, then it is raised."""
    began = time.perf_counter()
    stored_ids: list[int] = []
    failure: BaseException | None = None
    finished = False
    with transaction.atomic():
        cursor = job.cursor
        for slot in batch:
            if slot.page is not None:
                if slot.page_end:
                    cursor = json.dumps({"page": slot.page.next_cursor, "skip": 0})
                    if slot.page.done:
                        finished = True
                        break
                elif slot.page.total is not None and job.tickets_total is None:
                    job.tickets_total = slot.page.total
                continue
            if job.limit is not None and job.tickets_done + job.errors >= job.limit:
                finished = True
                break
            checkpoint = json.dumps({"page": slot.cursor, "skip": slot.index + 1})
            if slot.future is None:
                cursor = checkpoint
                continue
            try:
                event = slot.future.result()
            except ItemError as exc:
                _record_error(job, exc, checkpoint)
                cursor = checkpoint
                continue
            except BaseException as exc:
                failure = exc
                break
            cursor = checkpoint
            if job.until is not None and event.updated_at is not None and event.updated_at > job.until:
                continue
            line = slot.item[0] if job.integration is None else None
            try:
                created_ticket, message_ids = _store(job, event, line)  # an ItemError comes before any write
            except ItemError as exc:
                _record_error(job, exc, checkpoint)
                continue
            job.tickets_done += int(created_ticket)
            job.messages_done += len(message_ids)
            job.tickets_seen += 1
            stored_ids.extend(message_ids)
            if progress:
                progress(job)
        timings.add("store", time.perf_counter() - began)
        began = time.perf_counter()
        _job_update(
            job,
            tickets_done=job.tickets_done,
            messages_done=job.messages_done,
            tickets_seen=job.tickets_seen,
            tickets_total=job.tickets_total,
            cursor=cursor,
            **_seconds(timings, base),
        )
    timings.add("store", time.perf_counter() - began)  # the commit
    if failure is not None:
        raise failure
    embedding.add(stored_ids)
    return finished


def _store(job: ImportJob, event: NormalisedEvent, line: int | None) -> tuple[bool, list[int]]:
    """Customer, ticket and messages of one imported ticket, inside the caller's transaction."""
    organization = job.organization
    integration_id = job.integration_id
    source = job.integration.kind if job.integration is not None else FILE_SOURCE
    if line is not None:
        earlier = (
            ImportedTicket.objects.filter(
                job=job, ticket__integration__isnull=True, ticket__external_id=event.ticket_external_id[:255]
            )
            .exclude(line=line)
            .values_list("line", flat=True)
            .first()
        )
        if earlier is not None:
            raise ItemError(f"line {line}", f"duplicate ticket {event.ticket_external_id!r} (first on line {earlier})")
    person = event.customer
    if person is None:
        raise ItemError(f"line {line}" if line else f"ticket {event.ticket_external_id}", "ticket without a customer")
    customer = customer_resolve(
        organization=organization,
        source=source,
        external_id=person.external_id[:255],
        name=person.name[:200],
        email=person.email[:254],
        # As for webhooks: an email attaches to an existing customer only if the helpdesk verifies emails.
        email_verified=job.integration is not None and job.integration.verifies_emails,
    )
    ticket = ticket_upsert(
        organization=organization,
        customer=customer,
        integration_id=integration_id,
        external_id=event.ticket_external_id[:255],
        changes=TicketChanges(
            subject=event.subject[:500] if event.subject else None,
            status=event.status,
            priority=event.priority,
            channel=event.channel,
            tags=[tag[:100] for tag in event.tags if tag] if event.tags is not None else None,
        ),
        source_updated_at=event.updated_at,
        created_at=event.created_at,
        announce=False,
    )
    fallback_time = event.created_at or event.updated_at or timezone.now()
    message_ids = messages_ingest_bulk(
        ticket=ticket,
        messages=[
            TicketMessage(
                author_role=message.author_role,
                author_name=message.author_name[:200],
                body=message.body,
                is_public=message.is_public,
                external_id=message.external_id[:255],
                created_at=message.created_at or fallback_time,
            )
            for message in event.messages
            if message.body
        ],
    )
    # One process runs a job at a time (the advisory lock), so no other writer can add this row meanwhile.
    created = not ImportedTicket.objects.filter(job=job, ticket=ticket).exists()
    if created:
        ImportedTicket.objects.create(job=job, ticket=ticket, line=line)
    return created, message_ids


def _record_error(job: ImportJob, error: ItemError, checkpoint: str) -> None:
    """Log an item's error once (a resumed import meets the same bad item again) and move past it."""
    with transaction.atomic():
        locked = ImportJob.objects.select_for_update().get(pk=job.pk)
        known = any(entry.get("where") == error.where for entry in locked.error_log)
        if not known:
            locked.errors += 1
            if len(locked.error_log) < ERROR_LOG_MAX:
                locked.error_log.append({"where": error.where, "error": error.message})
        locked.cursor = checkpoint
        locked.heartbeat_at = timezone.now()
        locked.save(update_fields=["errors", "error_log", "cursor", "heartbeat_at"])
    job.errors, job.error_log, job.cursor = locked.errors, locked.error_log, locked.cursor
    logger.warning("import #%s: %s", job.pk, error)


# ---------------------------------------------------------------- memory formation


def _solved_by_customer(job: ImportJob) -> list[tuple[int, list[int]]]:
    """Solved imported tickets grouped by customer, each customer's oldest first (so the newest facts win)."""
    rows = (
        ImportedTicket.objects.filter(job=job, ticket__status__in=_SOLVED)
        .order_by("ticket__customer_id", "ticket__solved_at", "ticket__created_at", "ticket_id")
        .values_list("ticket__customer_id", "ticket_id")
    )
    return [(customer_id, [ticket for _, ticket in group]) for customer_id, group in groupby(rows, key=lambda r: r[0])]


def _consolidate(job: ImportJob, progress: Progress | None) -> None:
    batches = _solved_by_customer(job)
    _job_update(job, consolidations_total=sum(len(ids) for _, ids in batches), consolidations_done=0)
    for customer_id, ticket_ids in batches:
        imported_tickets_consolidate.send(sender=ImportJob, customer_id=customer_id, ticket_ids=ticket_ids)
        _job_update(job, consolidations_done=job.consolidations_done + len(ticket_ids))
        if progress:
            progress(job)


# ---------------------------------------------------------------- dry run


@dataclass
class DryRunReport:
    tickets: int = 0
    messages: int = 0
    solved: int = 0
    errors: list[str] = field(default_factory=list)
    estimate: dict[str, Any] = field(default_factory=dict)


def import_dry_run(
    *,
    organization: Organization,
    reader: HistoryReader,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
    consolidate: bool = True,
    progress: Callable[[DryRunReport], None] | None = None,
) -> DryRunReport:
    """Read the whole source, store nothing, and say what an import would do and (with an LLM configured)
    what its consolidation would cost."""
    report = DryRunReport()
    transcripts: list[dict[str, str]] = []
    try:
        for page in reader.pages(cursor="", since=since):
            for item in page.items:
                if limit is not None and report.tickets + len(report.errors) >= limit:
                    break
                _, updated = reader.item_key(item)
                if until is not None and updated is not None and updated > until:
                    continue
                try:
                    event = reader.ticket(item)
                except ItemError as exc:
                    report.errors.append(str(exc))
                    continue
                report.tickets += 1
                report.messages += sum(1 for message in event.messages if message.body)
                if event.status in _SOLVED:
                    report.solved += 1
                    transcript = "\n".join(f"{m.author_role}: {m.body}" for m in event.messages)
                    transcripts.append({"subject": event.subject or "", "transcript": transcript})
                if progress:
                    progress(report)
            if page.done or (limit is not None and report.tickets + len(report.errors) >= limit):
                break
    finally:
        reader.close()
    if consolidate:
        for _, answer in consolidation_estimate.send(
            sender=ImportJob, organization_id=organization.pk, tickets=transcripts
        ):
            if isinstance(answer, dict):
                report.estimate = answer
    return report


# ---------------------------------------------------------------- progress figures


@dataclass(frozen=True)
class ImportFigures:
    """What the admin and the terminal show about a job."""

    messages_per_second: float | None
    tickets_per_second: float | None
    eta_seconds: float | None
    elapsed_seconds: float


def import_figures(job: ImportJob) -> ImportFigures:
    if job.started_at is None:
        return ImportFigures(None, None, None, 0.0)
    end = job.finished_at or job.heartbeat_at or timezone.now()
    elapsed = max((end - job.started_at).total_seconds(), 0.0)
    if elapsed <= 0 or job.tickets_done == 0:
        return ImportFigures(None, None, None, elapsed)
    messages_rate = job.messages_done / elapsed
    tickets_rate = job.tickets_done / elapsed
    eta = None
    target = min(filter(None, [job.tickets_total, job.limit]), default=None)
    if target and job.status == ImportJob.Status.RUNNING:
        eta = max(target - job.tickets_done - job.errors, 0) / tickets_rate
    return ImportFigures(messages_rate, tickets_rate, eta, elapsed)
