"""Finding 5 of the attack audit: after staff edited a customer's ticket and message and deleted a passage,
erasure left django_admin_log rows holding the customer's text. Here a canary goes in through every path
that stores text (API, widget, signed webhook, the agent's own run, admin edits and deletions, an outbound
reply and its logged attempt); after erasure, every text, varchar and JSON column of every table is scanned.
"""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from django.db import connection
from django.forms import MultiWidget
from django.http import StreamingHttpResponse
from django.test import Client
from rest_framework.test import APIClient

from memory.embeddings import _QUERY_CACHE, query_embed
from memory.models import ArchivalPassage
from support_agent.tokens import count_tokens
from tests.api.helpers import widget_session
from tests.conftest import Actors
from tests.tickets.fake_helpdesk import FakeHelpdesk
from tests.tickets.standard_sender import WHSEC, signed_headers
from tickets.auth import api_key_create
from tickets.models import CustomerIdentity, Integration, Ticket, TicketMessage
from tickets.services import TicketChanges, message_ingest, ticket_upsert

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CANARY = "canary-q7z"  # every path writes CANARY-<path>, so a leak names the path it came through


def _columns_holding(needle: str) -> list[tuple[str, str]]:
    """(table, column) for every text, varchar, json and jsonb column, of every table, that contains needle."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT table_name, column_name FROM information_schema.columns
            WHERE table_schema = current_schema()
              AND data_type IN ('text', 'character varying', 'character', 'json', 'jsonb', 'tsvector', 'ARRAY')
            """
        )
        found = []
        for table, column in cursor.fetchall():
            cursor.execute(f'SELECT 1 FROM "{table}" WHERE "{column}"::text ILIKE %s LIMIT 1', [f"%{needle}%"])
            if cursor.fetchone():
                found.append((table, column))
    return found


def _change_form_post(client: Client, url: str, changes: dict[str, str]) -> None:
    """Submit an admin change form as a browser would: every field as rendered, inlines included, plus changes."""
    page = client.get(url)
    assert page.status_code == 200, url
    data: dict[str, Any] = {}
    forms = [page.context["adminform"].form]
    for inline in page.context["inline_admin_formsets"]:
        formset = inline.formset
        forms += [formset.management_form, *formset.forms]
    for form in forms:
        for bound in form:
            value = bound.value()
            if value is None or value is False:
                continue
            widget = bound.field.widget
            if isinstance(widget, MultiWidget):  # a split date and time: one input per part
                for index, part in enumerate(widget.decompress(value) or []):
                    data[f"{bound.html_name}_{index}"] = str(part)
            else:
                data[bound.html_name] = value if not isinstance(value, list) else [str(v) for v in value]
    data.update(changes)
    response = client.post(url, data)
    assert response.status_code == 302, (url, response.context and response.context["adminform"].form.errors)


def _write_canaries(actors: Actors) -> None:
    dana, org = actors.customer, actors.org
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(organization=org, name='canary')[1]}")
    base = f"/api/customers/{dana.pk}"
    # API: an agent turn (the offline model searches, records what the customer states, answers), a passage,
    # a memory block edit, a search whose query is cached.
    turn = api.post(f"{base}/turns/", {"message": f"I'm Dana. My pet is called {CANARY}-turn."}, format="json")
    assert turn.status_code == 201, turn.content
    assert api.post(f"{base}/passages/", {"text": f"Note {CANARY}-passage"}, format="json").status_code == 201
    block = api.get(f"{base}/memory/preferences/").json()
    edit = {"value": f"Likes {CANARY}-block", "reason": "asked"}
    edited = api.patch(f"{base}/memory/preferences/", edit, format="json", HTTP_IF_MATCH=f'"{block["version"]}"')
    assert edited.status_code == 200, edited.content
    search = api.get(f"{base}/passages/search/", {"q": f"{CANARY}-search"})
    assert search.status_code == 200, search.content
    # Widget: Dana signs in on the website and writes.
    CustomerIdentity.objects.create(organization=org, customer=dana, source="widget", external_id="dana-web")
    widget = APIClient()
    token = widget_session(widget, org, "dana-web")
    widget.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    stream = widget.post(
        f"/api/widget/{org.widget_publishable_key}/messages/", {"body": f"Hi, {CANARY}-widget"}, format="json"
    )
    assert stream.status_code == 200
    assert b"event: done" in cast(StreamingHttpResponse, stream).getvalue()
    # A signed helpdesk webhook about her, processed into a message.
    hook = Integration.objects.create(organization=org, kind="standard", signing_secret=WHSEC)
    CustomerIdentity.objects.create(organization=org, customer=dana, source="standard", external_id="dana-std")
    body = json.dumps(
        {
            "type": "message.created",
            "timestamp": "2026-01-01T00:00:00Z",
            "data": {
                "id": "std-1",
                "subject": f"Subject {CANARY}-webhook",
                "status": "open",
                "requester": {"id": "dana-std", "name": "Dana Whitfield"},
                "message": {"id": "sm-1", "body": f"Body {CANARY}-webhook", "author_role": "customer"},
            },
        }
    ).encode()
    hooked = Client().post(
        f"/webhooks/standard/{hook.webhook_token}/",
        body,
        content_type="application/json",
        headers=signed_headers(body, "msg_canary"),
    )
    assert hooked.status_code == 202, hooked.content
    assert TicketMessage.objects.filter(customer=dana, body__contains=f"{CANARY}-webhook").exists()
    # An outbound reply to the helpdesk, whose failed attempt logged the helpdesk's answer.
    with FakeHelpdesk(script=[(500, {"error": f"rejected {CANARY}-outbound"}, {})]) as fake:
        zendesk = Integration.objects.create(
            organization=org,
            kind="zendesk",
            signing_secret="s",
            outbound_base_url=fake.url,
            outbound_credentials={"email": "bot@acme.example", "api_token": "tok"},
        )
        ticket = ticket_upsert(
            organization=org,
            customer=dana,
            integration_id=zendesk.pk,
            external_id="9001",
            changes=TicketChanges(subject="Return", status="open"),
        )
        message_ingest(
            customer=dana, ticket=ticket, body=f"Reply {CANARY}-outbound", author_role="agent", trigger_agent=False
        )
    # Admin: staff edit her ticket, a message and her name, and delete a passage.
    staff = Client()
    staff.force_login(cast(Any, actors.staff))
    _change_form_post(
        staff, f"/admin/tickets/ticket/{actors.open_ticket.pk}/change/", {"subject": f"{CANARY}-admin-ticket"}
    )
    message = TicketMessage.objects.filter(customer=dana, ticket=actors.open_ticket).first()
    assert message is not None
    _change_form_post(staff, f"/admin/tickets/ticketmessage/{message.pk}/change/", {"body": f"{CANARY}-admin-message"})
    _change_form_post(staff, f"/admin/tickets/customer/{dana.pk}/change/", {"name": f"Dana {CANARY}-admin-customer"})
    doomed = ArchivalPassage.objects.get(customer=dana, text__contains=f"{CANARY}-passage")
    deleted = staff.post(f"/admin/memory/archivalpassage/{doomed.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302


def test_erasure_leaves_no_canary_in_any_column_of_any_table(actors: Actors) -> None:
    _write_canaries(actors)
    stored = _columns_holding(CANARY)
    tables = {table for table, _ in stored}
    # The setup really wrote through every path (otherwise the scan below would prove nothing).
    expected = {
        "tickets_ticketmessage",
        "tickets_ticket",
        "tickets_webhookevent",
        "tickets_outbounddelivery",
        "tickets_outboundattempt",
        "memory_memoryblock",
        "memory_historicalmemoryblock",
        "support_agent_agentstep",
        "django_admin_log",
    }
    assert expected <= tables, stored
    query_embed(f"{CANARY}-cache")
    count_tokens(f"{CANARY}-cache")
    assert any(CANARY in text for _, text in _QUERY_CACHE)

    lee_messages = list(TicketMessage.objects.filter(customer=actors.other_customer).values_list("pk", flat=True))
    stranger_tickets = list(Ticket.objects.filter(customer=actors.stranger).values_list("pk", flat=True))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(organization=actors.org, name='erase')[1]}")
    assert api.post(f"/api/customers/{actors.customer.pk}/erase/").status_code == 200

    assert _columns_holding(CANARY) == []
    assert _columns_holding("Whitfield") == []
    assert not any(CANARY in text for _, text in _QUERY_CACHE)
    assert count_tokens.cache_info().currsize == 0
    # Nobody else's data went: Lee and the other organisation are intact.
    assert (
        list(TicketMessage.objects.filter(customer=actors.other_customer).values_list("pk", flat=True)) == lee_messages
    )
    assert list(Ticket.objects.filter(customer=actors.stranger).values_list("pk", flat=True)) == stranger_tickets
