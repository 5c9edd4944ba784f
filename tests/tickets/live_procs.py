"""Real processes for webhook tests: a redis-server of our own, gunicorn as `make run` starts it, a Celery
worker with beat, all pointed at this test run's database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx
from django.db import connection

VENV_BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def live_database_url() -> str:
    """The URL of the database this test runs against (pytest-django's test_ database)."""
    s = connection.settings_dict
    auth = quote(s["USER"]) + (":" + quote(s["PASSWORD"]) if s["PASSWORD"] else "")
    host = s["HOST"] or "127.0.0.1"
    if host.startswith("/"):
        port = f"&port={s['PORT']}" if s["PORT"] else ""
        return f"postgresql://{auth}@/{quote(s['NAME'])}?host={quote(host)}{port}"
    return f"postgresql://{auth}@{host}:{s['PORT'] or 5432}/{quote(s['NAME'])}"


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Proc:
    """A child process in its own process group, so that stopping it stops its children too."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.handle = log.open("ab")
        self.popen = subprocess.Popen(
            args, env=env, cwd=ROOT, stdout=self.handle, stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill(self) -> None:
        """SIGKILL the whole group: no shutdown, no acknowledgements, like a machine dying."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=30)

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.handle.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def redis_start(port: int, tmp: Path) -> Proc:
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = Proc(args, dict(os.environ), tmp / f"redis-{port}.log")

    def answers() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    wait_until(answers, timeout=20, what="redis-server")
    return proc


def child_env(*, redis_url: str, tmp: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=live_database_url(),
        REDIS_URL=redis_url,
        SUPPORTMEM_DATA_DIR=str(tmp / "data"),
        SECRET_KEY="live-test-secret-key",
        SUPPORTMEM_WEBHOOK_SWEEP_SECONDS="1",
        SUPPORTMEM_WEBHOOK_STUCK_SECONDS="2",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        LOG_LEVEL="INFO",
        # Each child gets a fresh data folder: with "local" its gunicorn master would first convert the int8
        # model there (tens of seconds); the float model loads without converting. tests/memory cover "local".
        SUPPORTMEM_EMBEDDINGS="local-torch",
    )
    env.pop("OPENAI_API_KEY", None)
    env.pop("OPENAI_BASE_URL", None)
    # The browser tests let their own process call the ORM beside Playwright's event loop; no child inherits that.
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    env.update(extra)
    return env


def gunicorn_start(env: dict[str, str], port: int, tmp: Path, ready_status: int = 405) -> Proc:
    """The production server exactly as `make run` starts it (gthread, 2 workers x 8 threads). Ready when a GET
    on the webhook path answers ``ready_status`` (405; 301 when it redirects to HTTPS)."""
    args = [
        str(VENV_BIN / "gunicorn"),
        "support_agent.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--worker-class",
        "gthread",
        "--workers",
        "2",
        "--threads",
        "8",
        "--timeout",
        "120",
    ]
    proc = Proc(args, env, tmp / "gunicorn.log")

    def answers() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/webhooks/x/y/", timeout=2).status_code == ready_status
        except httpx.HTTPError:
            return False

    wait_until(answers, timeout=90, what="gunicorn")
    return proc


def worker_start(env: dict[str, str], tmp: Path, name: str) -> Proc:
    """A Celery worker with embedded beat (the sweeper), as `make run` starts one when REDIS_URL is set."""
    args = [
        str(VENV_BIN / "celery"),
        "-A",
        "support_agent",
        "worker",
        "--beat",
        "--schedule",
        str(tmp / f"beat-{name}"),
        "-l",
        "info",
        "--concurrency",
        "4",
        "-n",
        f"{name}@%h",
    ]
    return Proc(args, env, tmp / f"worker-{name}.log")
