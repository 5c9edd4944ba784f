"""`make run`'s server command owns the embedded PostgreSQL: it says where the data lives, serves, and a double
Ctrl-C stops gunicorn and the database, leaving no postgres behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.tickets.live_procs import ROOT, free_port, wait_until

pytestmark = pytest.mark.slow


def _postgres_running(pgdata: Path) -> bool:
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().splitlines()[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_serve_announces_the_database_and_a_double_ctrl_c_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "SUPPORTMEM_EMBEDDED_PGDATA"}}
    env.update(SUPPORTMEM_DATA_DIR=str(tmp_path / "data"), HF_HUB_OFFLINE="1", WEB_CONCURRENCY="1")
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        serve = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port), "--no-demo"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:

            def healthy() -> bool:
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(healthy, timeout=240, what="the server to answer /healthz")
            pgdata = tmp_path / "data" / "pgdata"
            assert _postgres_running(pgdata)
            serve.send_signal(signal.SIGINT)
            time.sleep(0.3)
            serve.send_signal(signal.SIGINT)  # impatient: the second one kills gunicorn
            assert serve.wait(timeout=120) == 0
        finally:
            if serve.poll() is None:
                serve.kill()
    text = log.read_text()
    assert f"its data lives in {pgdata}" in text
    wait_until(lambda: not _postgres_running(pgdata), timeout=60, what="the embedded PostgreSQL to stop")
