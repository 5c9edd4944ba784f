"""Requests/s and latency of the REST API under the production server setup, on loopback.

Starts gunicorn exactly as `make run` does (gthread, 2 workers x 8 threads by default) on a free loopback
port, against this process's database, with the API-key throttle off (a benchmark is a flood by design).
A benchmark organisation (slug ``api-benchmark``, created once through the normal services) holds one
customer with ticket history and archival passages. Then ``--requests`` calls, ``--concurrency`` at a time
over keep-alive connections, go to the compiled-context endpoint and to the passage search endpoint; the
command prints requests/s and p50/p95/p99 latency for each. Run it on a scratch data folder, e.g.
``SUPPORTMEM_DATA_DIR=/tmp/bench python manage.py migrate && SUPPORTMEM_DATA_DIR=/tmp/bench python manage.py
api_benchmark``.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from itertools import cycle
from pathlib import Path
from typing import Any

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from memory.services import Provenance, passage_insert
from tickets.auth import api_key_create
from tickets.benchmarking import free_port, percentile
from tickets.models import Customer, Organization
from tickets.services import TicketChanges, customer_resolve, message_ingest, ticket_upsert

BENCH_SLUG = "api-benchmark"
QUERIES = [
    "refund for a double charge",
    "card reader firmware update",
    "two-factor login problem",
    "invoice address change",
    "shipping delay for the order",
    "cancel the subscription",
]
TOPICS = ["billing", "hardware", "login", "shipping", "subscription", "integration"]


class Command(BaseCommand):
    help = "Requests/s and p95 of the compiled-context and passage-search endpoints under gunicorn on loopback."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--requests", type=int, default=400, help="Requests per endpoint.")
        parser.add_argument("--concurrency", type=int, default=8, help="Requests in flight at once.")
        parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes.")
        parser.add_argument("--threads", type=int, default=8, help="Threads per gunicorn worker.")
        parser.add_argument("--passages", type=int, default=300, help="Passages of the benchmark customer.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args: Any, **options: Any) -> None:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one log line per request would drown the report
        if options["requests"] < 1 or options["concurrency"] < 1:
            raise CommandError("--requests and --concurrency must be at least 1.")
        customer = self._benchmark_customer(options["passages"])
        api_key = api_key_create(organization=customer.organization, name="api_benchmark")[1]
        port = free_port()
        server = self._start_gunicorn(port, options["workers"], options["threads"])
        try:
            base = f"http://127.0.0.1:{port}/api/customers/{customer.pk}"
            headers = {"Authorization": f"Bearer {api_key}"}
            self._wait_ready(f"{base}/", headers, server)
            results = {
                "context": self._measure(f"{base}/context/", None, headers, options),
                "passage_search": self._measure(f"{base}/passages/search/", QUERIES, headers, options),
            }
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        self._report(results, options)

    def _benchmark_customer(self, passages: int) -> Customer:
        """One customer with 8 tickets of history and ``passages`` archival facts, created once."""
        organization, created = Organization.objects.get_or_create(slug=BENCH_SLUG, defaults={"name": "API benchmark"})
        customer = customer_resolve(
            organization=organization, source="api", external_id="bench-1", name="Bench Customer", email="b@x.io"
        )
        if created:
            self.stderr.write("Creating the benchmark organisation's history and passages (once)…")
            self._seed(customer, passages)
        return customer

    def _seed(self, customer: Customer, passages: int) -> None:
        start = timezone.now() - timedelta(days=200)
        with transaction.atomic():
            for index, topic in enumerate(TOPICS + TOPICS[:2]):
                opened = start + timedelta(days=index * 20)
                ticket = ticket_upsert(
                    organization=customer.organization,
                    customer=customer,
                    integration_id=None,
                    external_id=f"bench-{index}",
                    changes=TicketChanges(subject=f"{topic} question", status="solved", tags=[topic]),
                    created_at=opened,
                    source_updated_at=opened + timedelta(days=1),
                )
                for turn in range(6):
                    message_ingest(
                        customer=customer,
                        ticket=ticket,
                        body=f"{QUERIES[(index + turn) % len(QUERIES)]}: message {turn} about {topic}.",
                        author_role="customer" if turn % 2 == 0 else "staff",
                        created_at=opened + timedelta(hours=turn),
                        announce=False,
                    )
        for index in range(passages):
            passage_insert(
                organization=customer.organization,
                customer=customer,
                text=f"Fact {index}: {QUERIES[index % len(QUERIES)]} ({TOPICS[index % len(TOPICS)]}), case {index}.",
                tags=[TOPICS[index % len(TOPICS)]],
                provenance=Provenance(reason="api_benchmark"),
            )

    def _start_gunicorn(self, port: int, workers: int, threads: int) -> subprocess.Popen[bytes]:
        # DATABASE_URL is inherited: settings exports the embedded database's URL when it started one.
        env = {
            **os.environ,
            "SUPPORTMEM_THROTTLE_API_KEY": "",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        gunicorn = Path(sys.executable).with_name("gunicorn")
        command = [str(gunicorn), "support_agent.wsgi:application", "--bind", f"127.0.0.1:{port}"]
        command += ["--worker-class", "gthread", "--workers", str(workers), "--threads", str(threads)]
        command += ["--timeout", "120", "--graceful-timeout", "5", "--log-level", "warning"]
        return subprocess.Popen(command, env=env, cwd=settings.BASE_DIR)  # noqa: S603 - our own binary and args

    def _wait_ready(self, url: str, headers: dict[str, str], server: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise CommandError("gunicorn exited during start-up; see its output above.")
            try:
                if httpx.get(url, headers=headers, timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise CommandError("gunicorn did not answer within 120 s.")

    def _measure(
        self, url: str, queries: list[str] | None, headers: dict[str, str], options: dict[str, Any]
    ) -> dict[str, float]:
        total, concurrency = options["requests"], options["concurrency"]
        params = [{"q": q} for q in queries] if queries else [{}]
        share = [total // concurrency + (1 if i < total % concurrency else 0) for i in range(concurrency)]

        def worker(count: int) -> tuple[list[float], int]:
            latencies, errors = [], 0
            with httpx.Client(headers=headers, timeout=60) as client:
                for _, query in zip(range(count), cycle(params), strict=False):
                    began = time.perf_counter()
                    response = client.get(url, params=query)
                    latencies.append((time.perf_counter() - began) * 1000)
                    errors += response.status_code != 200
            return latencies, errors

        worker(max(concurrency, 10))  # warm-up: every worker loads its code and, for search, the embedding model
        began = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            outcomes = list(pool.map(worker, [n for n in share if n]))
        elapsed = time.perf_counter() - began
        latencies = [value for values, _ in outcomes for value in values]
        return {
            "requests": len(latencies),
            "errors": sum(errors for _, errors in outcomes),
            "requests_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(statistics.median(latencies), 1),
            "p95_ms": round(percentile(latencies, 0.95), 1),
            "p99_ms": round(percentile(latencies, 0.99), 1),
        }

    def _report(self, results: dict[str, dict[str, float]], options: dict[str, Any]) -> None:
        setup = {key: options[key] for key in ("concurrency", "workers", "threads", "passages")}
        if options["json"]:
            self.stdout.write(json.dumps({"setup": setup, **results}))
            return
        self.stdout.write(
            f"gunicorn gthread {setup['workers']}x{setup['threads']} on loopback, concurrency "
            f"{setup['concurrency']}, {setup['passages']} passages"
        )
        for name, row in results.items():
            self.stdout.write(
                f"{name:15} {row['requests']:5.0f} requests, {row['errors']:.0f} errors: "
                f"{row['requests_per_s']:7.1f} req/s  p50 {row['p50_ms']:6.1f} ms  p95 {row['p95_ms']:6.1f} ms  "
                f"p99 {row['p99_ms']:6.1f} ms"
            )
