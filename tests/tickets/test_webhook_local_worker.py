"""Without a broker, `serve` runs `process_webhooks` beside gunicorn: intake only stores and answers, that
process processes and sweeps. And the intake path's shortcuts: the cached integration and the one-statement
insert keep their guarantees."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from tests.tickets.standard_sender import WHSEC, message_event, signed_headers
from tests.tickets.webhook_fixtures import wsgi_headers
from tickets.models import Integration, TicketMessage, WebhookEvent


@pytest.fixture
def standard(actors) -> Integration:
    return Integration.objects.create(organization=actors.org, kind="standard", signing_secret=WHSEC)


def _send(integration: Integration, n: int, **kwargs: str):
    body, msg_id = message_event(n, **kwargs)
    url = f"/webhooks/{integration.kind}/{integration.webhook_token}/"
    return Client().post(url, data=body, **wsgi_headers(signed_headers(body, msg_id)))


def test_with_a_local_worker_the_request_stores_and_process_webhooks_processes(standard, settings):
    settings.SUPPORTMEM_LOCAL_WORKER = True
    assert _send(standard, 1, role="staff").status_code == 202
    assert _send(standard, 2, role="staff").status_code == 202
    assert _send(standard, 1, role="staff").status_code == 200  # the repeat is still recognised
    assert list(WebhookEvent.objects.values_list("status", "attempts")) == [("received", 0)] * 2
    assert not TicketMessage.objects.filter(ticket__integration=standard).exists()  # nothing processed yet

    call_command("process_webhooks", once=True)
    assert list(WebhookEvent.objects.values_list("status", "attempts")) == [("processed", 1)] * 2
    assert TicketMessage.objects.filter(ticket__integration=standard).count() == 2


def test_process_webhooks_sweeps_a_failed_event_whose_backoff_is_over(standard, settings):
    settings.SUPPORTMEM_LOCAL_WORKER = True
    assert _send(standard, 3, role="staff").status_code == 202
    event = WebhookEvent.objects.get()
    # An earlier attempt failed and its backoff is over: not new (attempts > 0), so only the sweep finds it.
    WebhookEvent.objects.filter(pk=event.pk).update(status="failed", attempts=1, next_attempt_at=event.received_at)
    call_command("process_webhooks", once=True)
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("processed", 2)


def test_process_webhooks_refuses_to_run_beside_a_broker(settings):
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    with pytest.raises(CommandError, match="Celery worker"):
        call_command("process_webhooks", once=True)


def test_a_saved_change_to_the_integration_applies_to_the_next_delivery(standard):
    assert _send(standard, 4, role="staff").status_code == 202  # the integration is now cached
    standard.is_active = False
    standard.save()
    assert _send(standard, 5, role="staff").status_code == 404
    standard.is_active = True
    standard.signing_secret = "whsec_" + "A" * 44
    standard.save()
    assert _send(standard, 6, role="staff").status_code == 401  # signed with the old secret
    assert WebhookEvent.objects.count() == 1
