"""Agent replies go back to the helpdesk (a fake one on loopback): per vendor, retries, every attempt logged."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from tests.tickets.fake_helpdesk import FakeHelpdesk
from tickets.helpdesks import signature_verify
from tickets.models import Integration, OutboundAttempt, OutboundDelivery, TicketMessage
from tickets.services import TicketChanges, customer_resolve, message_ingest, ticket_upsert
from tickets.tasks import webhooks_sweep_task

WHSEC = "whsec_" + base64.b64encode(b"outbound-test-secret-32-bytes!!!").decode()


def _setup(actors, kind: str, url: str, *, mode: str = "note", credentials=None, ticket_id: str = "48213"):
    integration = Integration.objects.create(
        organization=actors.org,
        kind=kind,
        signing_secret=WHSEC if kind == "standard" else "s",
        outbound_base_url=url,
        outbound_credentials=credentials or {},
        reply_mode=mode,
    )
    customer = customer_resolve(organization=actors.org, source=kind, external_id="401234567", email="dana@example.com")
    ticket = ticket_upsert(
        organization=actors.org,
        customer=customer,
        integration_id=integration.pk,
        external_id=ticket_id,
        changes=TicketChanges(subject="Wrong size", status="open"),
    )
    return integration, ticket


def _agent_reply(ticket, capture, text: str = "A prepaid return label is on its way.") -> TicketMessage:
    with capture(execute=True):
        message, _ = message_ingest(
            customer=ticket.customer, ticket=ticket, body=text, author_role="agent", trigger_agent=False
        )
    return message


def test_zendesk_note_and_remote_id_adopted(actors, django_capture_on_commit_callbacks):
    audit = {"audit": {"events": [{"type": "Comment", "id": 27100000000042}]}}
    with FakeHelpdesk(script=[(200, audit, {})]) as fake:
        _, ticket = _setup(actors, "zendesk", fake.url, credentials={"email": "bot@acme.example", "api_token": "tok"})
        message = _agent_reply(ticket, django_capture_on_commit_callbacks)
    [request] = fake.requests
    assert (request.method, request.path) == ("PUT", "/api/v2/tickets/48213.json")
    assert request.json() == {"ticket": {"comment": {"body": message.body, "public": False}}}
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"bot@acme.example/token:tok").decode()
    delivery = OutboundDelivery.objects.get(message=message)
    assert (delivery.status, delivery.attempts, delivery.remote_id) == ("sent", 1, "27100000000042")
    message.refresh_from_db()
    assert message.external_id == "27100000000042"  # the helpdesk's echo of this comment is recognised
    assert OutboundAttempt.objects.get(delivery=delivery).status_code == 200


def test_zendesk_public_reply(actors, django_capture_on_commit_callbacks):
    with FakeHelpdesk() as fake:
        _, ticket = _setup(actors, "zendesk", fake.url, mode="public", credentials={"oauth_token": "oauth"})
        _agent_reply(ticket, django_capture_on_commit_callbacks)
    assert fake.requests[0].json()["ticket"]["comment"]["public"] is True
    assert fake.requests[0].headers["authorization"] == "Bearer oauth"


@pytest.mark.parametrize("mode,message_type", [("public", "comment"), ("note", "note")])
def test_intercom_conversation_reply(actors, django_capture_on_commit_callbacks, mode, message_type):
    answer = {"conversation_parts": {"conversation_parts": [{"id": "21500000123"}]}}
    with FakeHelpdesk(script=[(200, answer, {})]) as fake:
        credentials = {"access_token": "ic-token", "admin_id": "556677"}
        _, ticket = _setup(
            actors, "intercom", fake.url, mode=mode, credentials=credentials, ticket_id="215467890123456"
        )
        message = _agent_reply(ticket, django_capture_on_commit_callbacks)
    [request] = fake.requests
    assert request.path == "/conversations/215467890123456/reply"
    assert request.json() == {"message_type": message_type, "type": "admin", "admin_id": "556677", "body": message.body}
    assert request.headers["authorization"] == "Bearer ic-token"
    assert OutboundDelivery.objects.get(message=message).remote_id == "21500000123"


@pytest.mark.parametrize(
    "mode,path", [("public", "/v2/conversations/2891234567/reply"), ("note", "/v2/conversations/2891234567/notes")]
)
def test_helpscout_reply_and_note(actors, django_capture_on_commit_callbacks, mode, path):
    with FakeHelpdesk(script=[(201, {}, {"Resource-ID": "7100000077"})]) as fake:
        _, ticket = _setup(
            actors, "helpscout", fake.url, mode=mode, credentials={"access_token": "hs"}, ticket_id="2891234567"
        )
        message = _agent_reply(ticket, django_capture_on_commit_callbacks)
    [request] = fake.requests
    assert request.path == path
    assert request.json()["text"] == message.body
    if mode == "public":
        assert request.json()["customer"] == {"id": 401234567}
    assert OutboundDelivery.objects.get(message=message).remote_id == "7100000077"


@pytest.mark.parametrize(
    "mode,path", [("public", "/conversations/cnv_9x8y7z/messages"), ("note", "/conversations/cnv_9x8y7z/comments")]
)
def test_front_reply_and_comment(actors, django_capture_on_commit_callbacks, mode, path):
    with FakeHelpdesk(script=[(202, {"message_uid": "uid_1"}, {})]) as fake:
        _, ticket = _setup(
            actors, "front", fake.url, mode=mode, credentials={"api_token": "fr"}, ticket_id="cnv_9x8y7z"
        )
        message = _agent_reply(ticket, django_capture_on_commit_callbacks)
    [request] = fake.requests
    assert request.path == path
    assert request.json() == {"body": message.body}
    assert request.headers["authorization"] == "Bearer fr"


@pytest.mark.parametrize("kind", ["standard", "freshdesk"])
def test_standard_webhooks_outbound_is_signed(actors, django_capture_on_commit_callbacks, kind):
    with FakeHelpdesk() as fake:
        credentials = {"webhook_secret": WHSEC} if kind == "freshdesk" else {}
        _, ticket = _setup(actors, kind, fake.url + "/hooks/supportmem", credentials=credentials)
        message = _agent_reply(ticket, django_capture_on_commit_callbacks)
    [request] = fake.requests
    assert request.path == "/hooks/supportmem"
    # The receiver's check, with our own verifier: id.timestamp.body signed with the whsec_ key.
    signature_verify(kind="standard", headers=request.headers, body=request.body, secret=WHSEC)
    data = request.json()
    assert data["type"] == "message.created"
    assert data["data"]["message"] == {
        "id": str(message.pk),
        "body": message.body,
        "author_role": "agent",
        "public": False,
        "created_at": message.created_at.isoformat(),
    }
    assert data["data"]["ticket"]["id"] == "48213"


def test_500_then_success_backs_off_and_logs_every_attempt(actors, django_capture_on_commit_callbacks, settings):
    settings.SUPPORTMEM_OUTBOUND_RETRY_BASE_SECONDS = 30
    with FakeHelpdesk(script=[(500, {"error": "boom"}, {}), (200, {}, {})]) as fake:
        _, ticket = _setup(actors, "front", fake.url, credentials={"api_token": "fr"})
        before = timezone.now()
        message = _agent_reply(ticket, django_capture_on_commit_callbacks)
        delivery = OutboundDelivery.objects.get(message=message)
        assert (delivery.status, delivery.attempts) == ("failed", 1)
        assert "HTTP 500" in delivery.last_error
        # Backoff with jitter: between half and all of the base delay for the first retry.
        assert timedelta(seconds=15) <= delivery.next_attempt_at - before <= timedelta(seconds=31)
        assert len(fake.requests) == 1  # not retried before its time, whoever dispatches it
        webhooks_sweep_task()
        assert len(fake.requests) == 1
        OutboundDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
        with django_capture_on_commit_callbacks(execute=True):
            assert webhooks_sweep_task() == {"events": 0, "deliveries": 1}
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("sent", 2)
    assert list(OutboundAttempt.objects.filter(delivery=delivery).values_list("number", "status_code")) == [
        (1, 500),
        (2, 200),
    ]
    assert len(fake.requests) == 2


def test_retries_run_out_then_dead(actors, django_capture_on_commit_callbacks, settings):
    settings.SUPPORTMEM_OUTBOUND_MAX_ATTEMPTS = 2
    with FakeHelpdesk(script=[(503, {}, {})]) as fake:
        _, ticket = _setup(actors, "front", fake.url, credentials={"api_token": "fr"})
        message = _agent_reply(ticket, django_capture_on_commit_callbacks)
        OutboundDelivery.objects.filter(message=message).update(next_attempt_at=timezone.now())
        webhooks_sweep_task()
    delivery = OutboundDelivery.objects.get(message=message)
    assert (delivery.status, delivery.attempts) == ("dead", 2)
    assert OutboundAttempt.objects.filter(delivery=delivery).count() == 2


def test_client_error_is_dead_at_once_and_replayable_from_admin(actors, django_capture_on_commit_callbacks):
    with FakeHelpdesk(script=[(401, {"error": "bad token"}, {}), (200, {}, {})]) as fake:
        _, ticket = _setup(actors, "front", fake.url, credentials={"api_token": "fr"})
        message = _agent_reply(ticket, django_capture_on_commit_callbacks)
        delivery = OutboundDelivery.objects.get(message=message)
        assert (delivery.status, delivery.attempts) == ("dead", 1)
        admin = Client()
        admin.force_login(actors.staff)
        with django_capture_on_commit_callbacks(execute=True):
            response = admin.post(
                "/admin/tickets/outbounddelivery/", {"action": "replay", "_selected_action": [delivery.pk]}
            )
        assert response.status_code == 302
    delivery.refresh_from_db()
    assert delivery.status == "sent"
    assert len(fake.requests) == 2


def test_network_error_is_logged_and_retried(actors, django_capture_on_commit_callbacks):
    with FakeHelpdesk() as fake:
        url = fake.url
    _, ticket = _setup(actors, "front", url, credentials={"api_token": "fr"})  # nothing listens there now
    message = _agent_reply(ticket, django_capture_on_commit_callbacks)
    delivery = OutboundDelivery.objects.get(message=message)
    assert delivery.status == "failed"
    attempt = OutboundAttempt.objects.get(delivery=delivery)
    assert attempt.status_code is None and "ConnectError" in attempt.error


def test_missing_configuration_is_dead_with_a_clear_error(actors, django_capture_on_commit_callbacks):
    _, ticket = _setup(actors, "zendesk", "http://127.0.0.1:9", credentials={"email": "bot@acme.example"})
    message = _agent_reply(ticket, django_capture_on_commit_callbacks)
    delivery = OutboundDelivery.objects.get(message=message)
    assert delivery.status == "dead"
    assert "api_token" in delivery.last_error


def test_nothing_is_sent_for_customer_messages_or_inbound_only_integrations(actors, django_capture_on_commit_callbacks):
    integration, ticket = _setup(actors, "zendesk", "")
    _agent_reply(ticket, django_capture_on_commit_callbacks)  # inbound-only: no outbound URL or credentials
    with django_capture_on_commit_callbacks(execute=True):
        message_ingest(customer=ticket.customer, ticket=ticket, body="hello", author_role="staff")
        message_ingest(customer=actors.customer, ticket=actors.open_ticket, body="reply", author_role="agent")
    assert OutboundDelivery.objects.count() == 0
    assert integration.outbound_deliveries.count() == 0


def test_bad_credentials_shape_and_malformed_url_are_dead_not_retried_forever(
    actors, django_capture_on_commit_callbacks
):
    credentials = {"access_token": "hs", "user_id": "not-a-number"}
    _, ticket = _setup(actors, "helpscout", "http://127.0.0.1:9", mode="public", credentials=credentials)
    message = _agent_reply(ticket, django_capture_on_commit_callbacks)
    assert OutboundDelivery.objects.get(message=message).status == "dead"
    Integration.objects.all().delete()
    _, ticket = _setup(actors, "front", "http://[::1", credentials={"api_token": "fr"})
    message = _agent_reply(ticket, django_capture_on_commit_callbacks)
    delivery = OutboundDelivery.objects.get(message=message)
    assert delivery.status == "dead" and "InvalidURL" in delivery.last_error


def test_a_delivery_whose_workers_keep_dying_is_given_up(actors, django_capture_on_commit_callbacks, settings):
    settings.SUPPORTMEM_OUTBOUND_MAX_ATTEMPTS = 2
    _, ticket = _setup(actors, "front", "http://127.0.0.1:9", credentials={"api_token": "fr"})
    message, _ = message_ingest(customer=ticket.customer, ticket=ticket, body="hi", author_role="agent")
    from tickets.outbound import outbound_delivery_create

    delivery = outbound_delivery_create(message=message)
    # Two claims whose workers died before settling: attempts used, nothing logged, still "pending".
    OutboundDelivery.objects.filter(pk=delivery.pk).update(attempts=2, next_attempt_at=timezone.now())
    webhooks_sweep_task()
    delivery.refresh_from_db()
    assert delivery.status == "dead" and "gave up after 2 attempts" in delivery.last_error
