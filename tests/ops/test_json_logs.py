"""LOG_FORMAT=json: one JSON object per line, and the ids flow from a webhook to its event, the run it starts
and the reply delivery that run queues."""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.test import Client

from support_agent.celery import LOG_CONTEXT_HEADER, app
from support_agent.models import AgentRun
from telemetry.logs import JsonFormatter, log_context, log_scope
from tests.memory.fake_embedder import use_fake
from tests.tickets.fake_helpdesk import FakeHelpdesk
from tests.tickets.standard_sender import WHSEC, message_event, signed_headers
from tickets.models import Integration, OutboundDelivery, WebhookEvent


@pytest.fixture
def json_lines():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    lines: list[dict] = []
    yield lambda: lines.extend(json.loads(line) for line in stream.getvalue().splitlines()) or lines
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.mark.django_db(transaction=True)
def test_a_webhooks_event_id_is_on_the_lines_of_its_run_and_its_reply_delivery(actors, settings, json_lines):
    settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL = "", ""  # the offline model answers
    use_fake(settings)
    with FakeHelpdesk() as helpdesk:
        integration = Integration.objects.create(
            organization=actors.org, kind="standard", signing_secret=WHSEC, outbound_base_url=helpdesk.url
        )
        body, msg_id = message_event(3, text="Where is my parcel? Order A-00003.")
        headers = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in signed_headers(body, msg_id).items()}
        response = Client().post(
            f"/webhooks/standard/{integration.webhook_token}/",
            data=body,
            content_type="application/json",
            HTTP_X_REQUEST_ID="req-from-proxy-1",
            **headers,
        )
        assert response.status_code == 202 and response["X-Request-ID"] == "req-from-proxy-1"
    event = WebhookEvent.objects.get(pk=response.json()["event_id"])
    run = AgentRun.objects.get(trigger_message__customer=event.customer)
    delivery = OutboundDelivery.objects.get(message=run.reply_message)
    lines = json_lines()

    stored = [line for line in lines if line["message"] == f"webhook event {event.pk} stored (standard, received)"]
    assert stored and stored[0]["event_id"] == event.pk and stored[0]["request_id"] == "req-from-proxy-1"
    assert stored[0]["organization"] == actors.org.pk and stored[0]["level"] == "INFO" and stored[0]["time"]
    run_lines = [line for line in lines if line.get("run_id") == run.pk]
    assert any(line["message"].startswith(f"agent run {run.pk} started") for line in run_lines)
    assert all(line["event_id"] == event.pk and line["customer"] == event.customer_id for line in run_lines)
    delivery_lines = [line for line in lines if line.get("delivery_id") == delivery.pk]
    assert delivery_lines and all((line["event_id"], line["run_id"]) == (event.pk, run.pk) for line in delivery_lines)


def test_a_queued_task_carries_the_queuers_ids_in_its_message_headers():
    """What a worker in another process receives: the context rides in the task message's headers."""
    sent = []

    def capture(sender, headers, **kwargs):
        sent.append(headers)

    from celery.signals import before_task_publish

    before_task_publish.connect(capture, weak=False)
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    try:
        with app.connection_for_write("memory://") as conn, log_scope(event_id=41, run_id=7):
            app.tasks["tickets.outbound_deliver"].apply_async(args=[1], connection=conn, retry=False)
    finally:
        app.conf.task_always_eager = eager
        before_task_publish.disconnect(capture)
    assert sent[0][LOG_CONTEXT_HEADER] == {"event_id": 41, "run_id": 7}
    assert log_context() == {}
