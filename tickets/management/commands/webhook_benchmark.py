"""python manage.py webhook_benchmark: webhook load on loopback against the production server setup.

Starts gunicorn exactly as `make run` does (gthread, 2 workers x 8 threads) and, with REDIS_URL set, a Celery
worker; sends signed Standard Webhooks deliveries from a throwaway organisation; reports requests/s, time to
2xx (p50/p95/p99) and end-to-end processed events/s (first request sent -> last event processed). The
throwaway organisation and everything under it are deleted at the end.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tickets.benchmarking import free_port, percentile
from tickets.models import Integration, Organization, WebhookEvent

BIN = Path(sys.executable).parent


def _signed(secret: str, n: int, role: str, run: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "type": "message.created",
            "data": {
                "id": f"bench-{n % 500}",
                "subject": f"Benchmark ticket {n % 500}",
                "requester": {"id": f"bench-cust-{n % 500}", "email": f"bench{n % 500}@example.com"},
                "message": {"id": f"{run}-{n}", "body": f"Where is order A-{n:06d}?", "author_role": role},
            },
        }
    ).encode()
    msg_id, stamp = f"msg_{run}_{n}", str(int(time.time()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }
    return body, headers


class Command(BaseCommand):
    help = "Load-test the webhook endpoint under gunicorn on loopback; print requests/s, latency and events/s."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--requests", type=int, default=2000)
        parser.add_argument("--concurrency", type=int, default=32)
        parser.add_argument(
            "--worker-concurrency", type=int, default=2, help="Celery worker processes (make run starts 2)"
        )
        parser.add_argument("--role", choices=["staff", "customer"], default="staff", help="customer: agent runs too")
        parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for processing")
        parser.add_argument("--json", action="store_true")
        parser.add_argument(
            "--rate",
            default="",
            help="Open loop instead: comma-separated arrival rates (deliveries/s), each held for --duration seconds; "
            "prints p50/p95/p99 to 2xx and errors per rate, and the highest rate held at p99 under 100 ms.",
        )
        parser.add_argument("--duration", type=float, default=10.0, help="seconds per rate (open loop)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["requests"] < 1 or options["concurrency"] < 1:
            raise CommandError("--requests and --concurrency must be positive")
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one log line per request would skew the figures
        run = "b" + secrets.token_hex(4)
        organization = Organization.objects.create(name=f"Benchmark {run}", slug=f"bench-{run}")
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        integration = Integration.objects.create(organization=organization, kind="standard", signing_secret=secret)
        procs: list[subprocess.Popen[bytes]] = []
        try:
            port = free_port()
            env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port)}
            if settings.REDIS_URL:
                procs.append(self._worker(options["worker_concurrency"], env))
            else:  # as `serve` does without a broker: intake stores and answers, process_webhooks processes
                env["SUPPORTMEM_LOCAL_WORKER"] = "1"
                procs.append(
                    self._spawn([sys.executable, str(settings.BASE_DIR / "manage.py"), "process_webhooks"], env)
                )
            procs.append(self._gunicorn(env))
            url = f"http://127.0.0.1:{port}/webhooks/standard/{integration.webhook_token}/"
            self._wait_ready(port)
            if options["rate"]:
                self._rates(url, integration, run, options)
                return
            result = self._load(url, secret, run, options)
            result.update(self._drain(integration, options, result.pop("_started")))
            self._report(result, options)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:  # busy with a backlog: what it holds stays open, swept later
                        os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait(timeout=30)
            organization.delete()

    def _spawn(self, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # noqa: S603  (fixed command lines of our own)
            args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )

    def _gunicorn(self, env: dict[str, str]) -> subprocess.Popen[bytes]:
        # make run's own server configuration (gunicorn_conf: gthread workers x threads, warmed-up workers).
        return self._spawn(
            [str(BIN / "gunicorn"), "-c", "python:support_agent.gunicorn_conf", "support_agent.wsgi:application"], env
        )

    def _rates(self, url: str, integration: Integration, run: str, options: dict[str, Any]) -> None:
        """Open loop: deliveries leave on a fixed schedule whatever the answers do, and each one's latency counts
        from when it was due, so a server that falls behind shows it (no coordinated omission)."""
        try:
            rates = [float(r) for r in options["rate"].split(",") if r.strip()]
        except ValueError:
            raise CommandError("--rate takes numbers, e.g. --rate 100,200,300") from None
        if not rates or min(rates) <= 0 or options["duration"] <= 0:
            raise CommandError("--rate and --duration must be positive")
        rows = []
        offset = 0
        for rate in rates:
            count = max(int(rate * options["duration"]), 1)
            items = [
                _raw_request(url, *_signed(integration.signing_secret, offset + n, options["role"], run))
                for n in range(count)
            ]
            offset += count
            row = asyncio.run(_open_loop(url, items, rate))
            row["drain_s"] = self._backlog_drain(integration, options["timeout"])
            rows.append({"rate": rate, **row})
            time.sleep(2)  # let the server settle between rates
        held = [row["rate"] for row in rows if row["errors"] == 0 and row["ms_to_2xx"]["p99"] < 100]
        result = {
            "duration_s": options["duration"],
            "processing": "celery worker" if settings.REDIS_URL else "process_webhooks (no REDIS_URL)",
            "rates": rows,
            "held_at_p99_under_100ms": max(held) if held else None,
        }
        if options["json"]:
            self.stdout.write(json.dumps(result))
            return
        self.stdout.write(
            f"webhook_benchmark open loop: {options['duration']:g} s per rate, make run's gunicorn, "
            f"processing: {result['processing']}\n"
            "  rate/s  sent  achieved/s  p50 ms  p95 ms  p99 ms  errors  connections  backlog drained s"
        )
        for row in rows:
            ms = row["ms_to_2xx"]
            self.stdout.write(
                f"  {row['rate']:>6g}  {row['sent']:>4}  {row['achieved_per_s']:>10}  {ms['p50']:>6}  {ms['p95']:>6}  "
                f"{ms['p99']:>6}  {row['errors']:>6}  {row['connections']:>11}  {row['drain_s']}"
            )
        self.stdout.write(f"  highest rate held at p99 < 100 ms with no errors: {result['held_at_p99_under_100ms']}")

    def _backlog_drain(self, integration: Integration, timeout: float) -> float | None:
        """Seconds from the rate's last answer until every stored event is processed (None: not within timeout).
        The intake SLO is time to 2xx; processing may lag behind a burst, and this says by how much."""
        started = time.monotonic()
        open_events = WebhookEvent.objects.filter(integration=integration, status__in=WebhookEvent.OPEN_STATUSES)
        while open_events.exists():
            if time.monotonic() - started > timeout:
                return None
            time.sleep(0.1)
        return round(time.monotonic() - started, 1)

    def _worker(self, concurrency: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
        return self._spawn(
            [str(BIN / "celery"), "-A", "support_agent", "worker", "-l", "warning",
             "--concurrency", str(concurrency), "-n", f"bench-{os.getpid()}@%h"], env
        )  # fmt: skip

    def _wait_ready(self, port: int) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/webhooks/x/y/", timeout=2).status_code == 405:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise CommandError("gunicorn did not start within 120 s")

    def _load(self, url: str, secret: str, run: str, options: dict[str, Any]) -> dict[str, Any]:
        requests = [_signed(secret, n, options["role"], run) for n in range(options["requests"])]
        local = threading.local()
        latencies: list[float] = []
        failures: list[float] = []

        def send(item: tuple[bytes, dict[str, str]]) -> None:
            client = getattr(local, "client", None) or httpx.Client(timeout=60)
            local.client = client
            started = time.perf_counter()
            status = client.post(url, content=item[0], headers=item[1]).status_code
            (latencies if 200 <= status < 300 else failures).append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=options["concurrency"]) as pool:
            list(pool.map(send, requests))
        elapsed = time.perf_counter() - started
        if not latencies:
            raise CommandError(f"every request failed ({len(failures)} non-2xx answers)")
        return {
            "requests": len(requests),
            "concurrency": options["concurrency"],
            "non_2xx": len(failures),
            "requests_per_s": round(len(requests) / elapsed, 1),
            "ms_to_2xx": {
                "p50": round(statistics.median(latencies), 2),
                "p95": round(percentile(latencies, 0.95), 2),
                "p99": round(percentile(latencies, 0.99), 2),
            },
            "_started": started,
        }

    def _drain(self, integration: Integration, options: dict[str, Any], started: float) -> dict[str, Any]:
        """Wait until every accepted event is processed; events/s counts from the first request sent."""
        total = WebhookEvent.objects.filter(integration=integration).count()
        deadline = time.monotonic() + options["timeout"]
        done = 0
        while time.monotonic() < deadline:
            done = WebhookEvent.objects.filter(integration=integration, status=WebhookEvent.Status.PROCESSED).count()
            if done >= total:
                break
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        return {
            "events_stored": total,
            "events_processed": done,
            "processed_events_per_s": round(done / elapsed, 1),
            "end_to_end_s": round(elapsed, 2),
            "processing": "celery worker" if settings.REDIS_URL else "process_webhooks (no REDIS_URL)",
        }

    def _report(self, result: dict[str, Any], options: dict[str, Any]) -> None:  # closed loop
        if options["json"]:
            self.stdout.write(json.dumps(result))
            return
        ms = result["ms_to_2xx"]
        self.stdout.write(
            f"webhook_benchmark: {result['requests']} signed deliveries, concurrency {result['concurrency']}, "
            f"gunicorn gthread 2x8, processing: {result['processing']}\n"
            f"  requests/s: {result['requests_per_s']}  (non-2xx: {result['non_2xx']})\n"
            f"  time to 2xx ms: p50 {ms['p50']}  p95 {ms['p95']}  p99 {ms['p99']}\n"
            f"  processed events/s end to end: {result['processed_events_per_s']} "
            f"({result['events_processed']}/{result['events_stored']} in {result['end_to_end_s']} s)"
        )


class _Pool:
    """Raw HTTP/1.1 keep-alive connections to one host: a light client, so its own CPU does not take the server's.

    A request is pre-built bytes; a connection is reused as soon as its answer is read, and a new one is
    opened only when every open one is busy (an open loop needs as many as there are requests in flight)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened: list[asyncio.StreamWriter] = []

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.opened.append(writer)
        return reader, writer

    async def request(self, raw: bytes) -> int:
        """The answer's status code. A reused connection the server closed meanwhile is replaced once."""
        fresh = not self.idle
        reader, writer = await self._connect() if fresh else self.idle.pop()
        try:
            status = await _exchange(reader, writer, raw)
        except (ConnectionError, asyncio.IncompleteReadError):
            writer.close()
            if fresh:
                raise
            reader, writer = await self._connect()
            status = await _exchange(reader, writer, raw)
        self.idle.append((reader, writer))
        return status

    async def close(self) -> None:
        for writer in self.opened:
            writer.close()


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> int:
    writer.write(raw)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    elif b"transfer-encoding: chunked" in head.lower():
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")
    return int(lines[0].split(b" ", 2)[1])


def _raw_request(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    parts = urlsplit(url)
    lines = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _open_loop(url: str, items: list[bytes], rate: float) -> dict[str, Any]:
    """Send pre-built requests at `rate` per second on one event loop; latency counts from each due time."""
    latencies: list[float] = []
    errors = 0
    parts = urlsplit(url)
    pool = _Pool(parts.hostname or "127.0.0.1", parts.port or 80)
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def send(raw: bytes, due: float) -> None:
        nonlocal errors
        try:
            status = await asyncio.wait_for(pool.request(raw), timeout=30)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            errors += 1
            return
        if 200 <= status < 300:
            latencies.append((loop.time() - due) * 1000)
        else:
            errors += 1

    tasks = []
    for n, raw in enumerate(items):
        due = start + n / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(raw, due)))
    sent_for = loop.time() - start
    await asyncio.gather(*tasks)
    await pool.close()
    ordered = latencies or [float("nan")]
    return {
        "sent": len(items),
        "achieved_per_s": round(len(items) / max(sent_for, 1e-9), 1),
        "connections": len(pool.opened),
        "errors": errors,
        "ms_to_2xx": {
            "p50": round(statistics.median(ordered), 1),
            "p95": round(percentile(ordered, 0.95), 1),
            "p99": round(percentile(ordered, 0.99), 1),
        },
    }
