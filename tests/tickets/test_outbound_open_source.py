"""Agent replies to the open-source helpdesks, against loopback fakes answering as their APIs document:
Chatwoot ``POST /api/v1/accounts/{a}/conversations/{id}/messages``, Zammad's ``POST /api/v1/ticket_articles``."""

from __future__ import annotations

import pytest

from tests.tickets.fake_helpdesk import FakeHelpdesk
from tickets.models import Integration, OutboundDelivery, TicketMessage
from tickets.services import TicketChanges, customer_resolve, message_ingest, ticket_upsert

# What each API answers on success (trimmed to the fields a client reads), per their API references.
CHATWOOT_MESSAGE = {
    "id": 90412,
    "content": "…",
    "inbox_id": 3,
    "conversation_id": 57,
    "message_type": 1,
    "content_type": "text",
    "private": False,
    "created_at": 1741500000,
    "sender": {"id": 2, "name": "supportmem", "type": "user"},
}
ZAMMAD_ARTICLE = {
    "id": 3307,
    "ticket_id": 41,
    "type_id": 10,
    "sender_id": 1,
    "internal": True,
    "content_type": "text/plain",
    "body": "…",
    "created_at": "2025-03-13T10:00:00.000Z",
}


def _setup(actors, kind: str, url: str, *, mode: str, credentials: dict, ticket_id: str):
    integration = Integration.objects.create(
        organization=actors.org,
        kind=kind,
        signing_secret="s",
        outbound_base_url=url,
        outbound_credentials=credentials,
        reply_mode=mode,
    )
    customer = customer_resolve(organization=actors.org, source=kind, external_id="4021", email="lucia@example.es")
    ticket = ticket_upsert(
        organization=actors.org,
        customer=customer,
        integration_id=integration.pk,
        external_id=ticket_id,
        changes=TicketChanges(subject="Damaged parcel", status="open"),
    )
    return ticket


def _agent_reply(ticket, capture) -> TicketMessage:
    with capture(execute=True):
        message, _ = message_ingest(
            customer=ticket.customer,
            ticket=ticket,
            body="A replacement ships today.",
            author_role="agent",
            trigger_agent=False,
        )
    return message


@pytest.mark.parametrize("mode,private", [("public", False), ("note", True)])
def test_chatwoot_reply_and_private_note(actors, django_capture_on_commit_callbacks, mode, private):
    with FakeHelpdesk(script=[(200, CHATWOOT_MESSAGE, {})]) as fake:
        credentials = {"account_id": "1", "api_access_token": "cw-token"}
        ticket = _setup(actors, "chatwoot", fake.url, mode=mode, credentials=credentials, ticket_id="57")
        message = _agent_reply(ticket, django_capture_on_commit_callbacks)
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/api/v1/accounts/1/conversations/57/messages")
    assert request.headers["api_access_token"] == "cw-token"
    assert request.json() == {
        "content": "A replacement ships today.",
        "message_type": "outgoing",
        "private": private,
        "content_type": "text",
    }
    delivery = OutboundDelivery.objects.get(message=message)
    assert (delivery.status, delivery.remote_id) == ("sent", "90412")
    message.refresh_from_db()
    assert message.external_id == "90412"  # Chatwoot's message_created echo of this reply is recognised


@pytest.mark.parametrize("mode,internal,article_type", [("public", False, "note"), ("note", True, "note")])
def test_zammad_public_and_internal_article(actors, django_capture_on_commit_callbacks, mode, internal, article_type):
    with FakeHelpdesk(script=[(201, ZAMMAD_ARTICLE, {})]) as fake:
        ticket = _setup(actors, "zammad", fake.url, mode=mode, credentials={"api_token": "zm-token"}, ticket_id="41")
        message = _agent_reply(ticket, django_capture_on_commit_callbacks)
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/api/v1/ticket_articles")
    assert request.headers["authorization"] == "Token token=zm-token"
    assert request.json() == {
        "ticket_id": 41,
        "body": "A replacement ships today.",
        "content_type": "text/plain",
        "type": article_type,
        "internal": internal,
        "sender": "Agent",
    }
    assert OutboundDelivery.objects.get(message=message).remote_id == "3307"


def test_zammad_public_article_type_from_credentials(actors, django_capture_on_commit_callbacks):
    with FakeHelpdesk(script=[(201, ZAMMAD_ARTICLE, {})]) as fake:
        credentials = {"api_token": "zm-token", "public_article_type": "web"}
        ticket = _setup(actors, "zammad", fake.url, mode="public", credentials=credentials, ticket_id="41")
        _agent_reply(ticket, django_capture_on_commit_callbacks)
    assert fake.requests[0].json()["type"] == "web"


def test_chatwoot_bad_token_is_dead(actors, django_capture_on_commit_callbacks):
    unauthorized = (401, {"errors": ["You need to sign in or sign up before continuing."]}, {})
    with FakeHelpdesk(script=[unauthorized]) as fake:
        credentials = {"account_id": "1", "api_access_token": "wrong"}
        ticket = _setup(actors, "chatwoot", fake.url, mode="public", credentials=credentials, ticket_id="57")
        message = _agent_reply(ticket, django_capture_on_commit_callbacks)
    delivery = OutboundDelivery.objects.get(message=message)
    assert delivery.status == "dead" and "401" in delivery.last_error


def test_zammad_rate_limited_is_retried(actors, django_capture_on_commit_callbacks):
    with FakeHelpdesk(script=[(429, {"error": "too many requests"}, {"Retry-After": "7"})]) as fake:
        ticket = _setup(actors, "zammad", fake.url, mode="note", credentials={"api_token": "t"}, ticket_id="41")
        message = _agent_reply(ticket, django_capture_on_commit_callbacks)
    delivery = OutboundDelivery.objects.get(message=message)
    assert delivery.status == "failed" and delivery.next_attempt_at is not None


def test_missing_configuration_is_dead_with_the_reason(actors, django_capture_on_commit_callbacks):
    with FakeHelpdesk() as fake:
        ticket = _setup(
            actors, "chatwoot", fake.url, mode="note", credentials={"api_access_token": "t"}, ticket_id="57"
        )
        message = _agent_reply(ticket, django_capture_on_commit_callbacks)
    assert fake.requests == []
    delivery = OutboundDelivery.objects.get(message=message)
    assert delivery.status == "dead" and "account_id" in delivery.last_error
