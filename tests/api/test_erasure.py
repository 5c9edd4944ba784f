"""Erasure: after erasing a customer, no row anywhere holds their name, email or a phrase from their messages.

Runs with real commits (transaction=True) so that everything that happens after commit in production
(message embeddings, passage embeddings) happens here too before the erasure.
"""

from __future__ import annotations

import pytest
from django.db import connection

from memory.services import Provenance, block_set_value, blocks_ensure, passage_insert
from support_agent.models import AgentRun
from tickets.models import Customer, Integration, TicketMessage, WebhookEvent

UNIQUE_PHRASE = "zebra-quartz-7781"
NEEDLES = ["Whitfield", "dana@example.com", UNIQUE_PHRASE]


def _rows_holding(needle: str) -> list[tuple[str, str, int]]:
    """(table, column, rows) for every text-like column of every table that contains the needle."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT table_name, column_name FROM information_schema.columns
            WHERE table_schema = 'public'
              AND (data_type IN ('text', 'character varying', 'json', 'jsonb', 'tsvector', 'ARRAY'))
            """
        )
        columns = cursor.fetchall()
        found = []
        for table, column in columns:
            cursor.execute(f'SELECT count(*) FROM "{table}" WHERE "{column}"::text ILIKE %s', [f"%{needle}%"])
            count = cursor.fetchone()[0]
            if count:
                found.append((table, column, count))
    return found


def _give_dana_a_history(actors, api) -> None:
    customer = actors.customer
    blocks_ensure(customer=customer)
    block = customer.memory_blocks.get(label="customer")
    block_set_value(block=block, value="Dana Whitfield, owner of a bakery.", provenance=Provenance())
    block_set_value(block=block, value=f"Dana Whitfield, bakery; code word {UNIQUE_PHRASE}.", provenance=Provenance())
    passage_insert(
        organization=actors.org,
        customer=customer,
        text=f"Dana Whitfield said {UNIQUE_PHRASE}.",
        provenance=Provenance(),
    )
    response = api.post(
        f"/api/customers/{customer.pk}/turns/",
        {"message": f"My code word is {UNIQUE_PHRASE}, Dana Whitfield here."},
        format="json",
    )
    assert response.status_code == 201, response.content
    integration = Integration.objects.create(organization=actors.org, kind="zendesk")
    WebhookEvent.objects.create(
        integration=integration,
        organization=actors.org,
        delivery_key="d-1",
        event_type="ticket.created",
        raw_body='{"requester": {"email": "dana@example.com", "name": "Dana Whitfield"}}',
    )
    WebhookEvent.objects.create(
        integration=integration,
        organization=actors.org,
        delivery_key="d-2",
        event_type="ticket.created",
        raw_body='{"requester": {"id": "zd-1", "name": "D. Whitfield"}}',
    )
    WebhookEvent.objects.create(
        integration=integration,
        organization=actors.org,
        delivery_key="d-3",
        event_type="ticket.created",
        raw_body='{"requester": {"id": "zd-10", "email": "lee@example.com"}}',
    )


@pytest.mark.django_db(transaction=True)
def test_erasure_leaves_no_row_about_the_customer(actors, api):
    _give_dana_a_history(actors, api)
    for needle in NEEDLES:
        assert _rows_holding(needle), f"the setup should have stored {needle!r} somewhere"
    assert AgentRun.objects.filter(customer=actors.customer).exists()
    lee_messages = TicketMessage.objects.filter(customer=actors.other_customer).count()

    response = api.post(f"/api/customers/{actors.customer.pk}/erase/")
    assert response.status_code == 200, response.content
    deleted = response.json()["deleted"]
    assert deleted["tickets.customer"] == 1 and deleted["tickets.ticketmessage"] >= 5
    assert deleted["memory.historicalmemoryblock"] >= 3 and deleted["memory.archivalpassage"] >= 1
    # The turn, plus the consolidation run the solved ticket triggered.
    assert deleted["support_agent.agentrun"] == 2 and deleted["support_agent.agentstep"] >= 1
    assert deleted["tickets.webhookevent"] == 2

    for needle in NEEDLES:
        assert _rows_holding(needle) == [], needle
    assert not Customer.objects.filter(pk=actors.customer.pk).exists()
    # Nobody else lost anything: Lee's messages and the event about zd-10 are still there.
    assert TicketMessage.objects.filter(customer=actors.other_customer).count() == lee_messages
    assert WebhookEvent.objects.filter(delivery_key="d-3").exists()
    assert api.get(f"/api/customers/{actors.customer.pk}/").status_code == 404


def test_export_holds_everything_about_the_customer(actors, api):
    blocks_ensure(customer=actors.customer)
    passage_insert(organization=actors.org, customer=actors.customer, text="Prefers email.", provenance=Provenance())
    body = api.get(f"/api/customers/{actors.customer.pk}/export/").json()
    assert body["customer"]["email"] == "dana@example.com"
    assert [i["external_id"] for i in body["identities"]] == ["zd-1"]
    assert len(body["tickets"]) == 2 and len(body["messages"]) == 3
    assert {b["label"] for b in body["memory_blocks"]} == {"customer", "preferences", "open_issues"}
    assert len(body["memory_block_history"]) >= 3
    assert [p["text"] for p in body["passages"]] == ["Prefers email."] and "embedding" not in body["passages"][0]
    assert body["agent_runs"] == [] and body["webhook_events"] == []
    assert api.get(f"/api/customers/{actors.stranger.pk}/export/").status_code == 404
