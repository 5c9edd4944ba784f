"""Messages outside tickets keep their channel: API turns never show in the widget's history, and the staff see
both as conversations on the customer's page, each agent message linked to the run that wrote it."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from support_agent.models import AgentRun
from tests.api.helpers import widget_session
from tickets.models import CustomerIdentity, TicketMessage


@pytest.mark.django_db(transaction=True)
def test_api_turns_stay_out_of_the_widget_history_and_both_show_on_the_customer_page(actors, api):
    token = widget_session(APIClient(), actors.org, "visitor-ch", name="Ana Souza")
    widget = APIClient()
    widget.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    url = f"/api/widget/{actors.org.widget_publishable_key}/messages/"
    b"".join(widget.post(url, {"body": "Hi, where is my parcel 7781?"}, format="json").streaming_content)
    customer = CustomerIdentity.objects.get(external_id="visitor-ch").customer

    turn = api.post(f"/api/customers/{customer.pk}/turns/", {"message": "Server-side note via API"}, format="json")
    assert turn.status_code == 201, turn.content

    history = [m["body"] for m in widget.get(url).json()]
    assert "Hi, where is my parcel 7781?" in history
    assert "Server-side note via API" not in history
    api_reply = AgentRun.objects.get(pk=turn.json()["id"]).reply_message
    assert api_reply is not None and api_reply.channel == "api"
    assert api_reply.body not in history

    staff = Client()
    staff.force_login(actors.staff)
    html = staff.get(f"/admin/support_agent/customermemory/{customer.pk}/change/").content.decode()
    assert 'id="conversations"' in html
    assert "Hi, where is my parcel 7781?" in html and "Server-side note via API" in html
    assert ">Chat widget<" in html and ">API<" in html
    run = AgentRun.objects.get(pk=turn.json()["id"])
    assert f'id="message-{api_reply.pk}"' in html
    assert f"/admin/support_agent/agentrun/{run.pk}/change/" in html and f"written by run #{run.pk}" in html
    assert f"answered by run #{run.pk}" in html

    trace = staff.get(f"/admin/support_agent/agentrun/{run.pk}/change/").content.decode()
    assert f"#message-{api_reply.pk}" in trace  # the run links to its reply
    assert "Step 1" in trace and "Core memory" in trace and "Memory statistics" in trace
    assert "tokens in" in trace  # the prompt by part, with its token total


def test_a_message_outside_a_ticket_records_its_channel(actors):
    from tickets.services import message_ingest

    message, _ = message_ingest(
        customer=actors.customer, body="hello", author_role=TicketMessage.Role.CUSTOMER, channel="widget"
    )
    assert TicketMessage.objects.get(pk=message.pk).channel == "widget"
