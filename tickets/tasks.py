"""Celery tasks for webhooks and outbound replies: thin wrappers that take primary keys and call one service.

Dispatch never fails the caller: with the broker down the row is already in the database, and the sweeper
(Celery beat, ``CELERY_BEAT_SCHEDULE`` in settings) dispatches it again once the broker is back.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
from celery import Task, current_app, shared_task
from django.conf import settings

logger = logging.getLogger(__name__)


def dispatch(task: Task, *args: Any, countdown: float | None = None) -> bool:
    """Queue a task without retrying against a dead broker; False (and a warning) when it could not be queued."""
    try:
        task.apply_async(args=args, countdown=countdown, retry=False)
    except Exception as exc:  # kombu/redis raise several types; all mean "not queued"
        logger.warning("could not queue %s%s (%s); the sweeper will dispatch it again", task.name, args, exc)
        return False
    return True


@shared_task(name="tickets.webhook_event_process", ignore_result=True, acks_late=True)
def webhook_event_process_task(event_id: int) -> str:
    from tickets.intake import webhook_event_process  # services import tasks, never the other way at load

    return webhook_event_process(event_id=event_id)


# New events wait in a Redis list for at most this long; one task processes everything that arrived meanwhile.
# Pushing an id costs the request one round trip instead of a Celery publish (which cost ~1 ms of CPU each).
WEBHOOK_QUEUE_WINDOW = 0.2
WEBHOOK_QUEUE_BATCH = 50
_WEBHOOK_QUEUE = "supportmem:webhooks:queue"
_WEBHOOK_SCHEDULED = "supportmem:webhooks:scheduled"
_CLIENTS: dict[str, redis.Redis] = {}


def _redis() -> redis.Redis:
    url = settings.REDIS_URL
    if url not in _CLIENTS:
        _CLIENTS[url] = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    return _CLIENTS[url]


def webhook_event_queue(event_id: int) -> None:
    """Have a stored event processed soon. Never fails the caller: an id that cannot be queued (broker down)
    stays ``received`` in the database, and the sweeper dispatches it once its grace period is over."""
    if not settings.REDIS_URL or current_app.conf.task_always_eager:
        dispatch(webhook_event_process_task, event_id)  # in-process: processed now
        return
    try:
        client = _redis()
        pipe = client.pipeline(transaction=False)
        pipe.rpush(_WEBHOOK_QUEUE, event_id)
        # The first id of a window schedules the task; the flag expires in case that task is lost.
        pipe.set(_WEBHOOK_SCHEDULED, "1", nx=True, ex=300)
        first = pipe.execute()[1]
        if first and not dispatch(webhook_events_queued_task, countdown=WEBHOOK_QUEUE_WINDOW):
            client.delete(_WEBHOOK_SCHEDULED)
    except redis.RedisError as exc:
        logger.warning("could not queue webhook event %s (%s); the sweeper will dispatch it", event_id, exc)


@shared_task(name="tickets.webhook_events_queued", ignore_result=True)
def webhook_events_queued_task() -> int:
    """Process every queued event, oldest first. An event whose id this task took but did not finish (the worker
    died) is still open in the database: the sweeper dispatches it after its grace period."""
    from tickets.intake import webhook_event_process

    client = _redis()
    client.delete(_WEBHOOK_SCHEDULED)  # ids that arrive from now on schedule the next task
    done = 0
    while raw := client.lpop(_WEBHOOK_QUEUE, WEBHOOK_QUEUE_BATCH):
        for value in raw:
            webhook_event_process(event_id=int(value))
            done += 1
    return done


@shared_task(name="tickets.outbound_deliver", ignore_result=True, acks_late=True)
def outbound_deliver_task(delivery_id: int) -> str:
    from tickets.outbound import outbound_deliver

    result = outbound_deliver(delivery_id=delivery_id)
    if result.retry_in is not None:
        dispatch(outbound_deliver_task, delivery_id, countdown=result.retry_in)
    return result.status


@shared_task(name="tickets.webhooks_sweep", ignore_result=True)
def webhooks_sweep_task() -> dict[str, int]:
    """Re-dispatch webhook events stuck unprocessed and outbound replies whose retry time has come."""
    from tickets.intake import webhook_events_due
    from tickets.outbound import outbound_deliveries_due

    events = webhook_events_due()
    deliveries = outbound_deliveries_due()
    for event_id in events:
        dispatch(webhook_event_process_task, event_id)
    for delivery_id in deliveries:
        dispatch(outbound_deliver_task, delivery_id)
    if events or deliveries:
        logger.info("sweeper dispatched %d webhook events and %d outbound replies", len(events), len(deliveries))
    return {"events": len(events), "deliveries": len(deliveries)}


@shared_task(name="tickets.import_history", ignore_result=True)
def import_history_task(job_id: int) -> str:
    """Run or resume a history import. Not retried automatically: a failed import keeps its reason and resumes
    from its checkpoint when staff (or the command) start it again."""
    from tickets.helpdesks.history import ImportSourceError
    from tickets.imports import ImportBusy, import_job_run

    try:
        return import_job_run(job_id=job_id).status
    except ImportBusy as exc:
        logger.info("%s", exc)
        return "busy"
    except ImportSourceError as exc:
        logger.warning("import #%s stopped: %s", job_id, exc)
        return "failed"


def import_history_dispatch(job_id: int) -> None:
    """Start an import from a web request. With a broker it is a Celery task; without one (tasks in-process) it
    runs in a thread of this process, so the request returns at once and the admin can watch its progress."""
    from django.conf import settings

    if settings.REDIS_URL and not settings.CELERY_TASK_ALWAYS_EAGER:
        dispatch(import_history_task, job_id)
        return

    def run() -> None:
        from django.db import connection

        try:
            import_history_task.apply(args=[job_id])
        finally:
            connection.close()

    threading.Thread(target=run, name=f"import-{job_id}", daemon=True).start()
