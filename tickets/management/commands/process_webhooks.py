"""python manage.py process_webhooks: without a broker, process webhook events beside the web server.

`make run` without REDIS_URL starts it (support_agent/management/commands/serve.py) and tells gunicorn so
(SUPPORTMEM_LOCAL_WORKER): a webhook request then only verifies, stores and answers, and this process, at a
lower CPU priority, takes each new event from the database, processes it (tasks it starts run here, in-process)
and sweeps events left stuck or failed, as Celery beat's sweeper does with a broker. With REDIS_URL set the
Celery worker does all of this; this command refuses to run then.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import OperationalError, connection

from tickets.intake import webhook_event_process, webhook_events_new
from tickets.tasks import webhooks_sweep_task

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Without a broker: process new webhook events as they are stored and sweep stuck ones (make run's)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--poll", type=float, default=0.2, help="seconds between looks when idle")
        parser.add_argument("--once", action="store_true", help="sweep once, process every new event, and exit")

    def handle(self, *args: Any, poll: float, once: bool, **options: Any) -> None:
        if settings.REDIS_URL:
            raise CommandError("REDIS_URL is set: the Celery worker (with beat) processes webhook events")
        if poll <= 0:
            raise CommandError("--poll must be positive")
        os.setpriority(os.PRIO_PROCESS, 0, max(os.getpriority(os.PRIO_PROCESS, 0), settings.SUPPORTMEM_WORKER_NICE))
        stopping = False

        def stop(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            stopping = True  # finish the event in hand; the rest stay stored for the next start

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        sweep_every = float(settings.SUPPORTMEM_WEBHOOK_SWEEP_SECONDS)
        next_sweep = 0.0
        while not stopping:
            try:
                if time.monotonic() >= next_sweep:
                    webhooks_sweep_task()  # tasks run in-process: due events and replies are handled here, now
                    next_sweep = time.monotonic() + sweep_every
                ids = webhook_events_new()
                for event_id in ids:
                    webhook_event_process(event_id=event_id)
                    if stopping:
                        break
            except OperationalError as exc:  # the database restarting: try again shortly on a new connection
                logger.warning("process_webhooks: %s", exc)
                connection.close()
                ids = []
            if not ids:
                if once:
                    return
                time.sleep(poll)
