"""Finding 1: a helpdesk identity must not inherit another customer because it sends their email address.

The attacker signs nothing themselves: they type the victim's email into a helpdesk form (an Intercom lead,
a web form, a portal), and the helpdesk sends us a correctly signed webhook whose requester is a new id
with that email. The agent must answer them as a new customer, with none of the victim's history.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.tickets.standard_sender import WHSEC, signed_headers
from tests.tickets.webhook_fixtures import wsgi_headers
from tickets.auth import api_key_create
from tickets.models import Customer, CustomerIdentity, Integration, TicketMessage
from tickets.services import customer_resolve

# Phrases only in Dana's own history (the attacker's message names none of them).
VICTIM_HISTORY = ("89 usd", "4.2.3", "point of sale", "march invoice")


@pytest.fixture
def offline(settings) -> None:
    settings.OPENAI_API_KEY = ""
    settings.OPENAI_BASE_URL = ""


@pytest.fixture
def api(actors) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(organization=actors.org, name='tests')[1]}")
    return client


def _attacker_event(requester_id: str, email: str) -> tuple[bytes, str]:
    body = json.dumps(
        {
            "type": "message.created",
            "timestamp": "2026-01-01T00:00:00Z",
            "data": {
                "id": f"t-{requester_id}",
                "subject": "Billing question",
                "status": "open",
                "requester": {"id": requester_id, "email": email, "name": "Dana Whitfield"},
                "message": {
                    "id": f"m-{requester_id}",
                    "body": "Was I charged twice? Remind me what you fixed on my card reader and the sync firmware.",
                    "author_role": "customer",
                },
            },
        }
    ).encode()
    return body, f"msg_{requester_id}"


def _deliver(integration: Integration, body: bytes, msg_id: str, capture) -> None:
    url = f"/webhooks/{integration.kind}/{integration.webhook_token}/"
    with capture(execute=True):
        response = Client().post(url, data=body, **wsgi_headers(signed_headers(body, msg_id, WHSEC)))
    assert response.status_code == 202


def test_signed_webhook_with_a_victims_email_gets_a_new_customer_and_none_of_their_history(
    actors, offline, django_capture_on_commit_callbacks
):
    standard = Integration.objects.create(organization=actors.org, kind="standard", signing_secret=WHSEC)
    body, msg_id = _attacker_event("attacker-1", "DANA@example.com")
    _deliver(standard, body, msg_id, django_capture_on_commit_callbacks)

    identity = CustomerIdentity.objects.get(organization=actors.org, source="standard", external_id="attacker-1")
    assert identity.customer_id != actors.customer.pk
    assert set(actors.customer.identities.values_list("source", "external_id")) == {("zendesk", "zd-1")}
    # The agent answered the sender as the new customer, and nothing of Dana's history reached them.
    reply = TicketMessage.objects.get(customer=identity.customer, author_role="agent")
    assert reply.ticket is not None and reply.ticket.customer_id == identity.customer_id
    assert not any(phrase in reply.body.lower() for phrase in VICTIM_HISTORY), reply.body
    assert not TicketMessage.objects.filter(customer=actors.customer, body__contains="Was I charged twice").exists()


def test_integration_that_verifies_emails_attaches_by_email(actors, offline, django_capture_on_commit_callbacks):
    standard = Integration.objects.create(
        organization=actors.org, kind="standard", signing_secret=WHSEC, verifies_emails=True
    )
    body, msg_id = _attacker_event("verified-1", "dana@example.com")
    _deliver(standard, body, msg_id, django_capture_on_commit_callbacks)
    identity = CustomerIdentity.objects.get(organization=actors.org, source="standard", external_id="verified-1")
    assert identity.customer_id == actors.customer.pk


def test_verification_is_off_by_default(actors):
    assert Integration.objects.create(organization=actors.org, kind="zendesk").verifies_emails is False


def test_api_customer_create_with_a_victims_email_is_a_new_customer(actors, api):
    payload = {"source": "api", "external_id": "crm-attacker", "name": "Mallory", "email": "dana@example.com"}
    created = api.post("/api/customers/", payload, format="json")
    assert created.status_code == 201 and created.json()["id"] != actors.customer.pk
    assert [i["external_id"] for i in api.get(f"/api/customers/{actors.customer.pk}/").json()["identities"]] == ["zd-1"]


def test_widget_and_unverified_resolution_never_match_by_email(actors):
    other = customer_resolve(
        organization=actors.org, source="intercom", external_id="lead-9", email="dana@example.com", name="Lead"
    )
    assert other.pk != actors.customer.pk
    assert Customer.objects.filter(organization=actors.org, email__iexact="dana@example.com").count() == 2
