"""/healthz, /readyz and /metrics in-process: probes answer without credentials, readiness names what is
missing, metrics want the token and move after a webhook, a run and a search."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from tests.memory.fake_embedder import use_fake
from tests.tickets.standard_sender import WHSEC, message_event, signed_headers
from tickets.auth import api_key_create
from tickets.models import Integration

TOKEN = "metrics-test-token"


def _scrape(client: Client) -> dict[str, float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    samples = {}
    for line in response.content.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def _matches(sample: str, name: str, labels: dict[str, str]) -> bool:
    sample_name, _, rest = sample.partition("{")
    found = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return sample_name == name and all(found.get(key) == value for key, value in labels.items())


def _delta(before: dict[str, float], after: dict[str, float], name: str, **labels: str) -> float:
    """How much the samples of ``name`` with these labels (others free) grew between two scrapes."""
    names = [sample for sample in after if _matches(sample, name, labels)]
    assert names, f"no sample {name} {labels}"
    return sum(after[sample] - before.get(sample, 0.0) for sample in names)


@pytest.mark.django_db
def test_healthz_answers_without_credentials():
    response = Client().get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_each_dependency(settings):
    use_fake(settings)
    client = Client()
    first = client.get("/readyz")  # the first probe starts loading the embedder in the background
    assert first.json()["checks"]["database"] == "ok" and first.json()["checks"]["broker"] == "not configured"
    for _ in range(50):
        response = client.get("/readyz")
        if response.status_code == 200:
            break
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "broker": "not configured", "embedder": "ok"},
    }


@pytest.mark.django_db
def test_readyz_fails_when_the_broker_is_configured_but_down(settings):
    use_fake(settings)
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = Client().get("/readyz")
    assert response.status_code == 503 and response.json()["checks"]["broker"] == "unreachable"


@pytest.mark.django_db
def test_metrics_are_off_without_a_token_and_refuse_a_wrong_one(settings):
    settings.SUPPORTMEM_METRICS_TOKEN = ""
    assert Client().get("/metrics").json()["error"]["code"] == "not_found"
    settings.SUPPORTMEM_METRICS_TOKEN = TOKEN
    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"


@pytest.mark.django_db(transaction=True)
def test_metrics_move_after_a_webhook_a_run_and_a_search(actors, settings):
    settings.SUPPORTMEM_METRICS_TOKEN = TOKEN
    settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL = "", ""  # the offline model runs the agent
    use_fake(settings)
    integration = Integration.objects.create(organization=actors.org, kind="standard", signing_secret=WHSEC)
    client = Client()
    before = _scrape(client)

    body, msg_id = message_event(7, text="My invoice shows a double charge.")
    response = client.post(
        f"/webhooks/standard/{integration.webhook_token}/",
        data=body,
        content_type="application/json",
        **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in signed_headers(body, msg_id).items()},
    )
    assert response.status_code == 202
    after_webhook = _scrape(client)
    events = "supportmem_webhook_events_total"
    assert _delta(before, after_webhook, events, kind="standard", status="received") == 1
    assert _delta(before, after_webhook, events, kind="standard", status="processed") == 1
    assert _delta(before, after_webhook, "supportmem_webhook_lag_seconds_count", kind="standard") == 1
    runs = "supportmem_agent_runs_total"
    assert _delta(before, after_webhook, runs, trigger="message", status="completed", stop_reason="end_turn") == 1
    assert _delta(before, after_webhook, "supportmem_agent_run_seconds_count", trigger="message") == 1
    assert _delta(before, after_webhook, "supportmem_agent_step_seconds_count") >= 1
    assert after_webhook['supportmem_embedding_backlog{kind="messages"}'] >= 0

    _, raw_key = api_key_create(organization=actors.org)
    search = client.get(
        f"/api/customers/{actors.customer.pk}/passages/search/?q=firmware", HTTP_AUTHORIZATION=f"Bearer {raw_key}"
    )
    assert search.status_code == 200
    after_search = _scrape(client)
    assert _delta(after_webhook, after_search, "supportmem_search_seconds_count", kind="passages") == 1
