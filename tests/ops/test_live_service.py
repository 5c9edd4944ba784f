"""The service as `make run` starts it (gunicorn with support_agent/gunicorn_conf.py, two workers): readiness
with the database down, and metrics that add up across both workers' processes."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from support_agent.models import AgentRun
from tests.tickets.live_procs import VENV_BIN, Proc, child_env, free_port, wait_until
from tests.tickets.standard_sender import WHSEC, message_event, signed_headers
from tickets.auth import api_key_create
from tickets.models import Integration

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
TOKEN = "live-metrics-token"


def _gunicorn(env: dict[str, str], tmp: Path) -> tuple[Proc, str]:
    port = free_port()
    env = {**env, "HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "2"}
    proc = Proc(
        [str(VENV_BIN / "gunicorn"), "-c", "python:support_agent.gunicorn_conf", "support_agent.wsgi"],
        env,
        tmp / "gunicorn.log",
    )
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(answers, timeout=120, what="gunicorn")
    return proc, base


def _samples(text: str) -> dict[str, float]:
    return {
        name: float(value)
        for name, value in (line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
        if not name.startswith("supportmem_metrics_state_seconds")
    }


def test_readyz_fails_with_the_database_down_while_healthz_answers(tmp_path):
    env = child_env(redis_url="", tmp=tmp_path, DATABASE_URL=f"postgresql://nobody@127.0.0.1:{free_port()}/gone")
    web, base = _gunicorn(env, tmp_path)
    try:
        response = httpx.get(f"{base}/readyz", timeout=30)
        assert response.status_code == 503
        assert response.json()["status"] == "not ready"
        assert response.json()["checks"]["database"] == "unreachable"
        assert httpx.get(f"{base}/healthz", timeout=10).json() == {"status": "ok"}
    finally:
        web.stop()


@pytest.mark.django_db(transaction=True)
def test_metrics_add_up_across_two_gunicorn_workers(tmp_path, actors):
    integration = Integration.objects.create(organization=actors.org, kind="standard", signing_secret=WHSEC)
    _, raw_key = api_key_create(organization=actors.org)
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = child_env(
        redis_url="", tmp=tmp_path, SUPPORTMEM_METRICS_TOKEN=TOKEN, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir)
    )
    web, base = _gunicorn(env, tmp_path)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        # Without a broker the event is processed and the agent runs inside the worker that took the webhook.
        body, msg_id = message_event(11, text="My invoice shows a double charge.")
        posted = httpx.post(
            f"{base}/webhooks/standard/{integration.webhook_token}/",
            content=body,
            headers=signed_headers(body, msg_id),
            timeout=300,
        )
        assert posted.status_code == 202, web.output()
        wait_until(lambda: AgentRun.objects.filter(status="completed").exists(), timeout=120, what="the agent run")
        search = httpx.get(
            f"{base}/api/customers/{actors.customer.pk}/passages/search/?q=firmware",
            headers={"Authorization": f"Bearer {raw_key}"},
            timeout=120,
        )
        assert search.status_code == 200
        scrapes = [_samples(httpx.get(f"{base}/metrics", headers=auth, timeout=60).text) for _ in range(12)]
    finally:
        web.stop()
    # Every scrape, whichever worker answered it, reads the same totals from both workers' sample files.
    assert all(scrape == scrapes[0] for scrape in scrapes[1:])
    pids = {match.group(1) for path in metrics_dir.iterdir() if (match := re.search(r"_(\d+)\.db$", path.name))}
    assert len(pids) >= 2
    totals = scrapes[0]
    assert totals['supportmem_webhook_events_total{kind="standard",status="received"}'] == 1
    assert totals['supportmem_webhook_events_total{kind="standard",status="processed"}'] == 1
    runs = [value for name, value in totals.items() if name.startswith("supportmem_agent_runs_total{")]
    assert sum(runs) == 1
    assert totals['supportmem_search_seconds_count{kind="passages"}'] >= 1
