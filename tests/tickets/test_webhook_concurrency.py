"""50 concurrent deliveries of one event: one stored event, one message, one agent run, every answer 2xx."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from support_agent.models import AgentRun
from tests.tickets.standard_sender import WHSEC, message_event, signed_headers
from tickets.models import Integration, TicketMessage, WebhookEvent


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_deliveries_of_the_same_event(live_server, actors):
    integration = Integration.objects.create(organization=actors.org, kind="standard", signing_secret=WHSEC)
    url = f"{live_server.url}/webhooks/standard/{integration.webhook_token}/"
    body, msg_id = message_event(1, text="My order A-00001 never arrived.")
    headers = signed_headers(body, msg_id)

    def deliver(_: int) -> int:
        return httpx.post(url, content=body, headers=headers, timeout=120).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(deliver, range(50)))
    assert all(200 <= status < 300 for status in statuses), statuses
    assert statuses.count(202) == 1 and statuses.count(200) == 49
    event = WebhookEvent.objects.get(integration=integration)
    assert event.status == WebhookEvent.Status.PROCESSED
    message = TicketMessage.objects.get(ticket__integration=integration, author_role="customer")
    assert message.external_id == "m-1"
    assert AgentRun.objects.filter(trigger_message=message).count() == 1
    assert AgentRun.objects.filter(customer=message.customer).count() == 1
