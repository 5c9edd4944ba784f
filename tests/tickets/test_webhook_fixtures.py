"""Every fixture in fixtures/<vendor>/ replayed end to end through the real URL, and every way to be refused."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.tickets.webhook_fixtures import ALL, Fixture, load, wsgi_headers
from tickets.models import CustomerIdentity, Integration, Ticket, TicketMessage, WebhookEvent

TIMESTAMPED = {"zendesk", "standard"}

# fixture -> (identity external id, ticket external id, ticket status, {message external id: (role, text)})
EXPECTED = {
    "zendesk-ticket.created.json": ("1800012345678", "48213", "new", {"description": ("customer", "slim-fit jeans")}),
    "zendesk-ticket.comment_added.json": (
        "1800012345678",
        "48213",
        "open",
        {"27100000000001": ("staff", "free exchange for size 32")},
    ),
    "zendesk-trigger-ticket_updated.json": (
        "dana.whitfield@example.com",
        "48213",
        "open",
        {None: ("staff", "free exchange")},
    ),
    "intercom-conversation.user.created.json": (
        "65f0c1a2b3c4d5e6f7a8b9c0",
        "215467890123456",
        "open",
        {"2150000011": ("customer", "slim-fit jeans")},
    ),
    "intercom-conversation.user.replied.json": (
        "65f0c1a2b3c4d5e6f7a8b9c0",
        "215467890123456",
        "open",
        {"2150000011": ("customer", "slim-fit jeans"), "21500000099": ("customer", "12 Birch Lane")},
    ),
    "helpscout-convo.created.json": ("401234567", "2891234567", "open", {"7100000001": ("customer", "slim-fit jeans")}),
    "helpscout-convo.customer.reply.created.json": (
        "401234567",
        "2891234567",
        "open",
        {"7100000001": ("customer", "slim-fit jeans"), "7100000009": ("customer", "12 Birch Lane")},
    ),
    "front-inbound-rule_webhook.json": (
        "crd_5d4c3b",
        "cnv_9x8y7z",
        "open",
        {"msg_1a2b3c": ("customer", "slim-fit jeans")},
    ),
    "front-inbound_received-app_webhook.json": (
        "crd_5d4c3b",
        "cnv_9x8y7z",
        "open",
        {"msg_1a2b3c": ("customer", "slim-fit jeans")},
    ),
    "freshdesk-ticket_created.json": (
        "dana.whitfield@example.com",
        "1187",
        "open",
        {"description": ("customer", "received size 34 instead of 32")},
    ),
    "standardwebhooks-ticket.created.json": ("dana.whitfield@example.com", "tkt_48213", "new", {}),
}


def _integration(actors, fixture: Fixture, secret: str | None = None) -> Integration:
    return Integration.objects.create(
        organization=actors.org, kind=fixture.kind, signing_secret=fixture.secret if secret is None else secret
    )


def _url(integration: Integration) -> str:
    return f"/webhooks/{integration.kind}/{integration.webhook_token}/"


def _post(integration: Integration, body: bytes, headers: dict[str, str]):
    return Client().post(_url(integration), data=body, **wsgi_headers(headers))


def _fresh_headers(fixture: Fixture) -> dict[str, str]:
    return (
        fixture.signed_now()
        if fixture.kind in TIMESTAMPED or "x-front-request-timestamp" in fixture.headers
        else fixture.headers
    )


def test_every_fixture_has_an_expectation():
    assert sorted(EXPECTED) == ALL


@pytest.mark.parametrize("name", ALL)
def test_fixture_replayed_end_to_end(actors, name, django_capture_on_commit_callbacks):
    fixture = load(name)
    integration = _integration(actors, fixture)
    with django_capture_on_commit_callbacks(execute=True):
        response = _post(integration, fixture.body, _fresh_headers(fixture))
    assert response.status_code == 202, response.content
    event = WebhookEvent.objects.get(integration=integration)
    assert event.status == WebhookEvent.Status.PROCESSED, event.last_error
    assert event.raw_body.encode() == fixture.body
    identity_id, ticket_id, status, messages = EXPECTED[name]
    identity = CustomerIdentity.objects.get(organization=actors.org, source=fixture.kind, external_id=identity_id)
    ticket = Ticket.objects.get(integration=integration, external_id=ticket_id)
    assert ticket.customer_id == identity.customer_id == event.customer_id
    assert event.ticket_id == ticket.pk
    assert ticket.status == status
    assert "A-10442" in ticket.subject
    # The agent's own reply (when it answered a customer message) is not the helpdesk's: leave it out here.
    stored = list(TicketMessage.objects.filter(ticket=ticket).exclude(author_role=TicketMessage.Role.AGENT))
    assert len(stored) == len(messages)
    for external_id, (role, text) in messages.items():
        match = [m for m in stored if (external_id is None or m.external_id == external_id) and text in m.body]
        assert len(match) == 1, (external_id, [m.body for m in stored])
        assert match[0].author_role == role
        assert match[0].customer_id == identity.customer_id
        assert "<p>" not in match[0].body and "<div>" not in match[0].body


@pytest.mark.parametrize("name", ALL)
def test_repeat_delivery_answers_200_and_changes_nothing(actors, name, django_capture_on_commit_callbacks):
    fixture = load(name)
    integration = _integration(actors, fixture)
    headers = _fresh_headers(fixture)
    with django_capture_on_commit_callbacks(execute=True):
        assert _post(integration, fixture.body, headers).status_code == 202
    before = (WebhookEvent.objects.count(), TicketMessage.objects.count(), Ticket.objects.count())
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        repeat = _post(integration, fixture.body, headers)
    assert repeat.status_code == 200
    assert repeat.json()["status"] == "duplicate"
    assert callbacks == []
    assert (WebhookEvent.objects.count(), TicketMessage.objects.count(), Ticket.objects.count()) == before


@pytest.mark.parametrize("name", ALL)
def test_tampered_body_is_refused_and_nothing_stored(actors, name):
    fixture = load(name)
    integration = _integration(actors, fixture)
    tampered = fixture.body.replace(b"A-10442", b"A-10443")
    assert tampered != fixture.body
    response = _post(integration, tampered, _fresh_headers(fixture))
    if fixture.kind == "freshdesk":
        assert response.status_code == 202  # nothing signs a Freshdesk body: the token is the only check
        return
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"
    assert WebhookEvent.objects.count() == 0


@pytest.mark.parametrize("name", ALL)
def test_wrong_secret_is_refused(actors, name):
    fixture = load(name)
    secret = "whsec_" + "d3JvbmctdGVzdC1zZWNyZXQtMzJieXRlcy4uLg==" if fixture.kind == "standard" else "wrong-secret"
    integration = _integration(actors, fixture, secret=secret)
    response = _post(integration, fixture.body, _fresh_headers(fixture))
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"code", "message", "details"}
    assert WebhookEvent.objects.count() == 0


@pytest.mark.parametrize(
    "name",
    [n for n in ALL if n.startswith(("zendesk", "standard")) or n == "front-inbound_received-app_webhook.json"],
)
# Well past the 5-minute window both ways, so a slow machine cannot drift a future stamp back inside it.
@pytest.mark.parametrize("offset", [-330, 330])
def test_stale_or_future_timestamp_is_refused(actors, name, offset):
    fixture = load(name)
    integration = _integration(actors, fixture)
    response = _post(integration, fixture.body, fixture.signed_now(offset=offset))
    assert response.status_code == 401
    assert "timestamp" in response.json()["error"]["message"]
    assert WebhookEvent.objects.count() == 0


@pytest.mark.parametrize(
    "name",
    [n for n in ALL if n.startswith(("zendesk", "standard")) or n == "front-inbound_received-app_webhook.json"],
)
def test_fixture_as_published_is_stale_now(actors, name):
    """The fixtures were signed in 2025: sent as they are, the timestamp check refuses them."""
    fixture = load(name)
    integration = _integration(actors, fixture)
    assert _post(integration, fixture.body, fixture.headers).status_code == 401
