"""A run left `running` by a process that died (a restarted worker or gunicorn) was never swept: it showed as in
progress for ever. Here a real `agent_chat` process is killed, or frozen, in the middle of a model call."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from support_agent.models import AgentRun
from support_agent.tasks import agent_runs_requeue_task
from tests.conftest import Actors
from tests.security.live_stack import live_env
from tests.tickets.live_procs import ROOT, wait_until
from tickets.auth import api_key_create

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def silent_model() -> Iterator[str]:
    """An OpenAI-compatible base URL that accepts connections and never answers: a model call in flight."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}/v1"


def _run_in_flight(tmp: Path, base_url: str, customer_external_id: str) -> tuple[subprocess.Popen[bytes], AgentRun]:
    env = live_env(tmp, OPENAI_BASE_URL=base_url, OPENAI_API_KEY="sk-test", SUPPORTMEM_LLM_TIMEOUT="600")
    args = [sys.executable, "manage.py", "agent_chat", "--org", "acme", "--customer", customer_external_id]
    proc = subprocess.Popen([*args, "--message", "Is my refund through?"], cwd=ROOT, env=env, start_new_session=True)
    running = AgentRun.objects.filter(customer__identities__external_id=customer_external_id, status="running")
    wait_until(running.exists, timeout=120, what="the run to start its model call")
    return proc, running.get()


def _next_message_answered(actors: Actors) -> None:
    """The customer writes again through the API; within a minute the agent has answered."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(organization=actors.org, name='t')[1]}")
    result: dict[str, Any] = {}

    def turn() -> None:
        try:
            path = f"/api/customers/{actors.customer.pk}/turns/"
            result["response"] = client.post(path, {"message": "Hello?"}, format="json")
        finally:
            connection.close()

    worker = threading.Thread(target=turn, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "the next message is still waiting for the dead run's lock"
    response = result["response"]
    assert response.status_code == 201, response.content
    assert response.json()["status"] == AgentRun.Status.COMPLETED and response.json()["reply"]


def test_run_of_a_killed_process_is_failed_by_the_sweep(tmp_path, actors, silent_model) -> None:
    proc, run = _run_in_flight(tmp_path, silent_model, "zd-1")
    os.killpg(proc.pid, signal.SIGKILL)  # an OOM kill, a redeploy: no cleanup runs
    proc.wait(timeout=30)
    agent_runs_requeue_task()  # what beat runs every minute
    run.refresh_from_db()
    assert run.status == AgentRun.Status.FAILED
    assert run.stop_reason == AgentRun.StopReason.WORKER_LOST
    assert run.finished_at is not None and "process stopped" in run.error
    _next_message_answered(actors)


def test_run_of_a_frozen_process_is_failed_after_its_lease_and_its_lock_freed(
    tmp_path, actors, silent_model, settings
) -> None:
    settings.SUPPORTMEM_AGENT_RUN_LEASE_SECONDS = 2
    proc, run = _run_in_flight(tmp_path, silent_model, "zd-1")
    try:
        os.killpg(proc.pid, signal.SIGSTOP)  # alive to PostgreSQL, holding the customer's lock, doing nothing
        agent_runs_requeue_task()
        run.refresh_from_db()
        assert run.status == AgentRun.Status.RUNNING  # within its lease: left alone
        time.sleep(3)
        agent_runs_requeue_task()
        run.refresh_from_db()
        assert run.status == AgentRun.Status.FAILED
        assert run.stop_reason == AgentRun.StopReason.WORKER_LOST and "lease" in run.error
        _next_message_answered(actors)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
