"""`make run`'s server: migrate, load the demo, collect static files, then gunicorn and, with REDIS_URL, a Celery
worker with beat (without it, `process_webhooks`) as children of this process, which owns the embedded PostgreSQL.

Owning the database here is what makes Ctrl-C reliable: the first one asks gunicorn and Celery to stop
gracefully, a second one kills them, and either way this process exits normally, so pgserver's exit hook stops
the embedded PostgreSQL (no other process holds it: the children inherit DATABASE_URL instead of starting
their own).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

GRACE_SECONDS = 20


class Command(BaseCommand):
    help = "Run the service on its embedded defaults: migrate, load the demo, serve with gunicorn."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", default=os.environ.get("PORT", "8000"))
        parser.add_argument("--no-demo", action="store_true", help="Do not load the demo organisation.")

    def handle(self, *args: Any, host: str, port: str, no_demo: bool, **options: Any) -> None:
        self._announce_database()
        call_command("migrate", interactive=False, verbosity=0)
        if settings.SUPPORTMEM_DEMO and not no_demo:  # make run: on with the embedded database, off with DATABASE_URL
            call_command("seed_demo")
        call_command("collectstatic", interactive=False, verbosity=0)
        env = {**os.environ, "HOST": host, "PORT": str(port)}
        children = []
        if os.environ.get("REDIS_URL"):
            self.stdout.write("REDIS_URL set: starting a Celery worker with beat")
            celery = [sys.executable, "-m", "celery", "-A", "support_agent", "worker", "--beat", "-l", "info"]
            children.append(_spawn([*celery, "--concurrency", "2"], env))
        else:
            # No broker: webhook events are processed by a process of their own, not in the request that
            # stored them (gunicorn is told so), and that process sweeps stuck events as beat would.
            self.stdout.write("No REDIS_URL: tasks run in-process; webhook events in `process_webhooks`")
            env["SUPPORTMEM_LOCAL_WORKER"] = "1"
            children.append(_spawn([sys.executable, str(settings.BASE_DIR / "manage.py"), "process_webhooks"], env))
        gunicorn = [sys.executable, "-m", "gunicorn", "-c", "python:support_agent.gunicorn_conf"]
        self.stdout.write(
            f"supportmem on http://{host}:{port}/  (admin /admin/, API docs /api/docs/, widget /widget/demo/); "
            "Ctrl-C stops it"
        )
        children.append(_spawn([*gunicorn, "support_agent.wsgi:application"], env))
        self._supervise(children)

    def _announce_database(self) -> None:
        pgdata = os.environ.get("SUPPORTMEM_EMBEDDED_PGDATA")
        if pgdata:
            self.stdout.write(
                f"Embedded PostgreSQL with pgvector started; its data lives in {pgdata} (kept across runs)"
            )
        else:
            database = settings.DATABASES["default"]
            self.stdout.write(
                f"Database from DATABASE_URL: {database.get('HOST')}:{database.get('PORT')}/{database.get('NAME')}"
            )

    def _supervise(self, children: list[subprocess.Popen[bytes]]) -> None:
        """Wait for the children; Ctrl-C (or SIGTERM) once stops them gracefully, twice kills them."""
        interrupts = 0

        def on_signal(signum: int, frame: FrameType | None) -> None:
            nonlocal interrupts
            interrupts += 1
            for child in children:
                if child.poll() is None:
                    _signal_group(child, signal.SIGTERM if interrupts == 1 else signal.SIGKILL)

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        deadline: float | None = None
        while any(child.poll() is None for child in children):
            if interrupts and deadline is None:
                deadline = time.monotonic() + GRACE_SECONDS
            if deadline is not None and time.monotonic() > deadline:
                for child in children:
                    if child.poll() is None:
                        _signal_group(child, signal.SIGKILL)
            if not interrupts and any(child.poll() is not None for child in children):
                on_signal(signal.SIGTERM, None)  # one child died: stop the other too
            time.sleep(0.2)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the database stops on the way out; do not cut that short
        self.stdout.write("Stopped; the embedded PostgreSQL stops with this process.")


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A child in its own process group: the terminal's Ctrl-C reaches only this process, which decides, and a
    kill reaches the child's own workers at once (a worker orphaned by its master would exit mid-teardown)."""
    return subprocess.Popen(args, env=env, start_new_session=True)  # noqa: S603  (our own fixed command lines)


def _signal_group(child: subprocess.Popen[bytes], signum: int) -> None:
    # SIGTERM: gunicorn's master (and Celery's) stop their workers gracefully; SIGKILL: the whole group, now.
    try:
        if signum == signal.SIGKILL:
            os.killpg(child.pid, signum)
        else:
            child.send_signal(signum)
    except ProcessLookupError:
        pass
