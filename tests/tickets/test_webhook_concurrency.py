"""Concurrent deliveries: 50 of one event store it once; a delivery is stored while another event is processed."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.db import connection

from support_agent.models import AgentRun
from tests.tickets.standard_sender import WHSEC, message_event, signed_headers
from tickets import intake
from tickets.models import Integration, TicketMessage, WebhookEvent


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_deliveries_of_the_same_event(live_server, actors):
    integration = Integration.objects.create(organization=actors.org, kind="standard", signing_secret=WHSEC)
    url = f"{live_server.url}/webhooks/standard/{integration.webhook_token}/"
    body, msg_id = message_event(1, text="My order A-00001 never arrived.")
    headers = signed_headers(body, msg_id)

    retried: list[int] = []

    def deliver(number: int) -> int:
        # The test server's listen backlog is small: on a busy machine a burst of 50 connections can be reset before
        # a request is read. A helpdesk retries such a delivery; so does this sender (up to five times).
        for attempt in range(5):
            try:
                return httpx.post(url, content=body, headers=headers, timeout=120).status_code
            except httpx.TransportError:
                if attempt == 4:
                    raise
                retried.append(number)
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(deliver, range(50)))
    assert all(200 <= status < 300 for status in statuses), statuses
    # Exactly one delivery is accepted as new; the rest are duplicates. (A reset after the server had read a
    # request loses that answer: with a retry, the accepted one may be among the lost.)
    assert statuses.count(202) == 1 or (retried and statuses.count(202) == 0), (statuses, retried)
    assert statuses.count(200) == 50 - statuses.count(202)
    event = WebhookEvent.objects.get(integration=integration)
    assert event.status == WebhookEvent.Status.PROCESSED
    message = TicketMessage.objects.get(ticket__integration=integration, author_role="customer")
    assert message.external_id == "m-1"
    assert AgentRun.objects.filter(trigger_message=message).count() == 1
    assert AgentRun.objects.filter(customer=message.customer).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_delivery_is_stored_while_another_event_of_its_integration_is_processed(
    live_server, actors, settings, monkeypatch
):
    # make run's way: the request only stores; processing runs elsewhere, in a transaction that holds its event's
    # row. Storing a delivery checks its integration and organisation rows (foreign keys), so processing must not
    # lock those, or every delivery waits for the event being processed.
    settings.SUPPORTMEM_LOCAL_WORKER = True
    integration = Integration.objects.create(organization=actors.org, kind="standard", signing_secret=WHSEC)
    url = f"{live_server.url}/webhooks/standard/{integration.webhook_token}/"
    body, msg_id = message_event(1)
    assert httpx.post(url, content=body, headers=signed_headers(body, msg_id), timeout=30).status_code == 202
    first = WebhookEvent.objects.get(integration=integration)

    inside, release = threading.Event(), threading.Event()
    real_apply = intake._event_apply

    def held_apply(event: WebhookEvent) -> str:
        inside.set()  # the event's transaction is open and its locks are held
        release.wait(60)
        return real_apply(event)

    monkeypatch.setattr(intake, "_event_apply", held_apply)

    def process() -> str:
        try:
            return intake.webhook_event_process(event_id=first.pk)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        processing = pool.submit(process)
        assert inside.wait(30)
        body, msg_id = message_event(2)
        try:
            status = httpx.post(url, content=body, headers=signed_headers(body, msg_id), timeout=10).status_code
        except httpx.TimeoutException:
            status = None  # stored only after the processing transaction ended
        finally:
            release.set()
        assert processing.result(timeout=60) == WebhookEvent.Status.PROCESSED
    assert status == 202
    assert WebhookEvent.objects.filter(integration=integration).count() == 2
