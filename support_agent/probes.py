"""Operations endpoints: /healthz (the process answers), /readyz (it can serve), /metrics (Prometheus).

/healthz and /readyz are unauthenticated and cheap, for load balancers and Kubernetes probes; /metrics wants
``Authorization: Bearer $SUPPORTMEM_METRICS_TOKEN`` and is off while that setting is empty.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from memory.embeddings import embedder_get, embedder_loaded, pending_messages, pending_passages
from tickets.errors import error_response

logger = logging.getLogger(__name__)

_migrated = False  # once true it stays true for the life of the process: migrations are not undone live
_embedder_loading = threading.Lock()


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _database_check(), "broker": _broker_check(), "embedder": _embedder_check()}
    ready = all(value in {"ok", "not configured"} for value in checks.values())
    return JsonResponse({"status": "ready" if ready else "not ready", "checks": checks}, status=200 if ready else 503)


def _database_check() -> str:
    global _migrated
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        if not _migrated:
            _migrated = not MigrationExecutor(connection).migration_plan(
                MigrationExecutor(connection).loader.graph.leaf_nodes()
            )
    except DatabaseError as exc:
        logger.warning("readiness: database unreachable (%s)", exc)
        connection.close()  # the next probe starts from a fresh connection
        return "unreachable"
    return "ok" if _migrated else "migrations pending"


def _broker_check() -> str:
    if not settings.REDIS_URL:
        return "not configured"
    import redis

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return "unreachable"
    return "ok"


def _embedder_check() -> str:
    """Ready once this process holds the embedder; the first probe starts loading it in the background."""
    if embedder_loaded():
        return "ok"
    if _embedder_loading.acquire(blocking=False):
        threading.Thread(target=_embedder_load, daemon=True, name="embedder-load").start()
    return "loading"


def _embedder_load() -> None:
    try:
        embedder_get()
    except Exception:
        logger.exception("readiness: the embedder failed to load")
    finally:
        _embedder_loading.release()


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.SUPPORTMEM_METRICS_TOKEN
    if not token:
        return error_response(404, "not_found", "Metrics are off: set SUPPORTMEM_METRICS_TOKEN to serve them.")
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), token.encode()):
        return error_response(401, "unauthorized", "Send Authorization: Bearer <SUPPORTMEM_METRICS_TOKEN>.")
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # adds up every process's samples
    else:
        registry = REGISTRY
    registry.register(_STATE)
    try:
        body = generate_latest(registry)
    finally:
        registry.unregister(_STATE)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


class StateCollector(Collector):
    """What the database and the broker hold right now, read at scrape time (the same from any process)."""

    def collect(self) -> Iterator[Any]:
        started = time.perf_counter()
        backlog = GaugeMetricFamily(
            "supportmem_embedding_backlog", "Messages and passages waiting for their embedding.", labels=["kind"]
        )
        backlog.add_metric(["messages"], pending_messages().count())
        backlog.add_metric(["passages"], pending_passages().count())
        yield backlog
        depth = _queue_depth()
        if depth is not None:
            queue = GaugeMetricFamily(
                "supportmem_celery_queue_depth", "Tasks waiting in the Celery queue.", labels=["queue"]
            )
            queue.add_metric(["celery"], depth)
            yield queue
        yield GaugeMetricFamily(
            "supportmem_metrics_state_seconds",
            "Time spent reading the state gauges.",
            value=time.perf_counter() - started,
        )


def _queue_depth() -> int | None:
    """Length of Celery's default queue in Redis; None without a broker (tasks run in-process)."""
    if not settings.REDIS_URL:
        return None
    import redis

    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
        return int(client.llen("celery"))  # type: ignore[arg-type]
    except redis.RedisError:
        return None


_STATE = StateCollector()
