"""python manage.py import_benchmark [--tickets 10000] [--comments 10]: a Zendesk history import end to end.

Serves a generated Zendesk account from a fake API in a child process on loopback (``tickets.helpdesk_fakes``,
the documented incremental export and comments shapes), imports it into a throwaway organisation through the
real code (HTTP client, reader, ingestion, bulk embedding with the configured embedder), without consolidation,
and reports messages/s end to end, the time split into fetch, store and embed, and peak memory. Then it
consolidates the same import's solved tickets with the configured model (the offline model without a key) and
reports runs/s. The throwaway organisation is deleted at the end (``--keep`` keeps it).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import secrets
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError, connection

from tickets.benchmarking import free_port
from tickets.helpdesk_fakes import FakeZendesk, serve
from tickets.imports import ImportTimings, import_job_run, import_job_start
from tickets.models import ImportJob, Integration, Organization


def _serve_forever(tickets: int, comments: int, customers: int, port: int) -> None:
    fake = FakeZendesk(tickets=tickets, comments=comments, customers=customers)
    server = serve(fake, port=port)
    fake.server = server
    server.serve_forever()


def _cpu_seconds(pid: int, *, reaped: bool = False) -> float:
    """User and system CPU of a process from /proc (with ``reaped``, that of its children it has waited for)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if reaped else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def _postgres_cpu() -> float | None:
    """CPU used so far by the local PostgreSQL server: its postmaster, its live processes and those that exited
    (their time is the postmaster's once it has reaped them). None for a server this machine cannot see."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT setting FROM pg_settings WHERE name = 'data_directory'")
            row = cursor.fetchone()
        postmaster = int((Path(row[0]) / "postmaster.pid").read_text().split()[0])
        total = _cpu_seconds(postmaster, reaped=True)
    except (OSError, ValueError, TypeError, IndexError, DatabaseError):
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == postmaster:
                total += _cpu_seconds(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return total


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Command(BaseCommand):
    help = "Benchmark a Zendesk history import from a loopback fake: messages/s (fetch/store/embed), then runs/s."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tickets", type=int, default=10_000)
        parser.add_argument("--comments", type=int, default=10, help="messages per ticket")
        parser.add_argument("--customers", type=int, default=2_000)
        parser.add_argument("--no-consolidation", action="store_true", help="skip the consolidation phase")
        parser.add_argument("--keep", action="store_true", help="keep the throwaway organisation")

    def handle(self, *args: Any, **options: Any) -> None:
        tickets, comments = options["tickets"], options["comments"]
        port = free_port()
        server = multiprocessing.get_context("fork").Process(
            target=_serve_forever, args=(tickets, comments, options["customers"], port), daemon=True
        )
        server.start()
        slug = f"bench-import-{secrets.token_hex(4)}"
        organization = Organization.objects.create(name="Import benchmark", slug=slug)
        try:
            self._run(organization, port, tickets, comments, options, server.pid or 0)
        finally:
            server.terminate()
            server.join(timeout=10)
            if not options["keep"]:
                organization.delete()

    def _run(
        self, organization: Organization, port: int, tickets: int, comments: int, options: Any, server_pid: int
    ) -> None:
        from memory.embeddings import embedder_get

        fake = FakeZendesk()
        integration = Integration.objects.create(
            organization=organization,
            kind="zendesk",
            outbound_base_url=f"http://127.0.0.1:{port}",
            outbound_credentials={"email": "admin@example.com", "api_token": "secret-token"},
        )
        _wait_for_port(port)
        embedder = embedder_get()
        embedder.embed(["warm up the model before the clock starts"])
        # The embedder alone on the same texts, in this process, right now: on a shared machine the import's
        # embed stage is only meaningful as a fraction of this.
        sample = [fake.comment_body(n, j) for n in range(1, 33) for j in range(8)]
        raw_began = time.perf_counter()
        embedder.embed(sample)
        raw_rate = len(sample) / (time.perf_counter() - raw_began)
        rss_before = _rss_mb()
        self.stdout.write(
            f"Importing {tickets} tickets x {comments} messages from a fake Zendesk on 127.0.0.1:{port} "
            f"(embedder {embedder.name}; RSS before {rss_before:.0f} MB)"
        )
        job, _ = import_job_start(organization=organization, integration=integration, consolidate=False)
        began = time.perf_counter()
        last = [began]

        def progress(current: ImportJob) -> None:
            now = time.perf_counter()
            if now - last[0] >= 10:
                last[0] = now
                if current.status == ImportJob.Status.CONSOLIDATING:
                    done, total = current.consolidations_done, current.consolidations_total
                    self.stderr.write(f"  {done} of {total} consolidations, {done / (now - began):.1f} runs/s")
                    return
                rate = current.messages_done / (now - began)
                self.stderr.write(f"  {current.tickets_done} tickets, {current.messages_done} messages, {rate:.0f}/s")

        timings = ImportTimings()
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        postgres_before, server_before = _postgres_cpu(), _cpu_seconds(server_pid)
        job = import_job_run(job_id=job.pk, progress=progress, timings=timings)
        wall = time.perf_counter() - began
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        postgres_after, server_cpu = _postgres_cpu(), _cpu_seconds(server_pid) - server_before
        cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
        peak = cpu_after.ru_maxrss / 1024
        expected = fake.expected_messages(tickets) if comments == fake.comments else tickets * comments
        messages = job.messages_done
        self.stdout.write(
            f"Import: {job.tickets_done} tickets, {messages} messages (expected {expected}), "
            f"{job.errors} errors in {wall:.1f} s"
        )
        self.stdout.write(f"  end to end: {messages / wall:.0f} messages/s ({job.tickets_done / wall:.1f} tickets/s)")
        self.stdout.write(
            "  stages overlap (fetch on a pool of threads, store on this one, embed on its own thread); "
            "busy time of each:"
        )
        for name, seconds, note in (
            ("fetch", timings.fetch, f"summed over {timings.fetch_threads} threads"),
            ("store", timings.store, "one thread"),
            ("embed", timings.embed, "one thread, the model on every core"),
        ):
            self.stdout.write(
                f"    {name}: {seconds:.1f} s ({100 * seconds / wall:.0f}% of wall, {note}; "
                f"{messages / seconds if seconds else 0:.0f} messages/s on its own)"
            )
        self.stdout.write(
            f"  the store loop waited {timings.waited_fetch:.1f} s for tickets being fetched and "
            f"{timings.waited_embed:.1f} s for the embedder"
        )
        postgres = (
            f"PostgreSQL {postgres_after - postgres_before:.0f}, "
            if postgres_before is not None and postgres_after is not None
            else ""
        )
        used = cpu + server_cpu + (postgres_after or 0) - (postgres_before or 0)
        self.stdout.write(
            f"  CPU-seconds: this process {cpu:.0f} (every thread, the model's too), {postgres}"
            f"the fake Zendesk {server_cpu:.0f}: {100 * used / wall / (os.cpu_count() or 1):.0f}% of the "
            f"machine's {os.cpu_count()} cores over the wall time"
        )
        embed_rate = messages / timings.embed if timings.embed else 0.0
        self.stdout.write(
            f"  the embedder alone, same texts, same process: {raw_rate:.0f} sentences/s; the import's embed stage "
            f"ran at {100 * embed_rate / raw_rate:.0f}% of it, the whole import at "
            f"{100 * messages / wall / raw_rate:.0f}%"
        )
        self.stdout.write(f"  peak RSS {peak:.0f} MB (before the import {rss_before:.0f} MB, with the model loaded)")
        if options["no_consolidation"]:
            return
        solved = job.imported_tickets.filter(ticket__status__in=["solved", "closed"]).count()
        ImportJob.objects.filter(pk=job.pk).update(consolidate=True, status=ImportJob.Status.CONSOLIDATING)
        began = time.perf_counter()
        job = import_job_run(job_id=job.pk, progress=progress)
        seconds = time.perf_counter() - began
        self.stdout.write(
            f"Consolidation: {job.consolidations_done} of {solved} solved tickets in {seconds:.1f} s: "
            f"{job.consolidations_done / seconds:.1f} runs/s"
        )


def _wait_for_port(port: int) -> None:
    import socket

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the fake Zendesk did not start")
