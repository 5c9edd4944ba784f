"""webhook_benchmark's open loop (--rate) against make run's gunicorn: a row per rate and the capacity line."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from tests.tickets.live_procs import live_database_url
from tickets.models import Organization, WebhookEvent

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_open_loop_reports_each_rate_and_cleans_up(monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", live_database_url())  # gunicorn serves this test's database
    monkeypatch.setenv("SUPPORTMEM_EMBEDDINGS", "local-torch")  # no int8 conversion in a fresh child
    monkeypatch.setenv("WEB_CONCURRENCY", "1")
    out = StringIO()
    call_command("webhook_benchmark", rate="4,8", duration=1.5, json=True, stdout=out)
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    assert [row["rate"] for row in result["rates"]] == [4.0, 8.0]
    assert [row["sent"] for row in result["rates"]] == [6, 12]
    for row in result["rates"]:
        assert row["errors"] == 0 and row["ms_to_2xx"]["p50"] <= row["ms_to_2xx"]["p99"]
    assert "held_at_p99_under_100ms" in result
    assert not Organization.objects.exists() and not WebhookEvent.objects.exists()
