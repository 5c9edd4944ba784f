"""Intake rules (design section 6): what bad input gets, ignored event types, the sweeper, dead events, replay."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError
from django.test import Client
from django.utils import timezone

from tests.tickets.standard_sender import WHSEC, message_event, signed_headers
from tests.tickets.webhook_fixtures import fixture_path, load, wsgi_headers
from tickets import intake
from tickets.helpdesks import SignatureError, signature_verify
from tickets.models import Integration, Ticket, TicketMessage, WebhookEvent
from tickets.tasks import webhooks_sweep_task


@pytest.fixture
def standard(actors) -> Integration:
    return Integration.objects.create(organization=actors.org, kind="standard", signing_secret=WHSEC)


def _url(integration: Integration) -> str:
    return f"/webhooks/{integration.kind}/{integration.webhook_token}/"


def _send(integration: Integration, body: bytes, msg_id: str = "msg_1", **extra):
    return Client().post(_url(integration), data=body, **wsgi_headers(signed_headers(body, msg_id)), **extra)


def test_malformed_json_is_400_and_stores_nothing(standard):
    response = _send(standard, b'{"type": "message.created", ')
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"
    assert WebhookEvent.objects.count() == 0


def test_invalid_utf8_and_deep_nesting_are_400(standard):
    assert _send(standard, b'{"a": "\xff"}').status_code == 400
    assert _send(standard, b"[" * 100_000 + b"]" * 100_000, "msg_2").status_code == 400


def test_body_over_one_mebibyte_is_413_and_stores_nothing(standard):
    body = json.dumps({"type": "message.created", "pad": "x" * (1024 * 1024)}).encode()
    response = _send(standard, body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert WebhookEvent.objects.count() == 0


def test_exactly_one_mebibyte_is_accepted(standard):
    prefix = b'{"type": "ping", "pad": "'
    body = prefix + b"x" * (1024 * 1024 - len(prefix) - 2) + b'"}'
    assert len(body) == 1024 * 1024
    assert _send(standard, body).status_code == 202


def test_unknown_url_wrong_kind_inactive_and_get_are_refused(actors, standard):
    body, msg_id = message_event(1)
    headers = wsgi_headers(signed_headers(body, msg_id))
    client = Client()
    assert client.post("/webhooks/standard/no-such-token/", data=body, **headers).status_code == 404
    wrong_kind = client.post(f"/webhooks/zendesk/{standard.webhook_token}/", data=body, **headers)
    assert wrong_kind.status_code == 404
    assert wrong_kind.json()["error"]["code"] == "not_found"
    assert client.get(_url(standard)).status_code == 405
    Integration.objects.filter(pk=standard.pk).update(is_active=False)
    assert client.post(_url(standard), data=body, **headers).status_code == 404
    assert WebhookEvent.objects.count() == 0


def test_missing_signature_is_401(standard):
    body, _ = message_event(1)
    response = Client().post(_url(standard), data=body, content_type="application/json")
    assert response.status_code == 401
    assert "missing" in response.json()["error"]["message"]


def test_unknown_event_type_is_stored_and_ignored(standard, django_capture_on_commit_callbacks):
    body = json.dumps({"type": "invoice.paid", "data": {"id": "in_1"}}).encode()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = _send(standard, body)
    assert response.status_code == 202
    event = WebhookEvent.objects.get()
    assert (event.status, event.event_type) == ("ignored", "invoice.paid")
    assert callbacks == []  # nothing dispatched
    assert Ticket.objects.filter(integration=standard).count() == 0


def test_payload_missing_what_its_type_needs_is_dead_with_the_reason(standard, django_capture_on_commit_callbacks):
    body = json.dumps({"type": "ticket.created", "data": {"subject": "no id, no requester"}}).encode()
    with django_capture_on_commit_callbacks(execute=True):
        assert _send(standard, body).status_code == 202
    event = WebhookEvent.objects.get()
    assert event.status == "dead"
    assert "payload error" in event.last_error and event.attempts == 1


def test_freshdesk_is_authenticated_by_url_token_and_optional_header(actors, django_capture_on_commit_callbacks):
    fixture = load("freshdesk-ticket_created.json")
    open_hook = Integration.objects.create(organization=actors.org, kind="freshdesk")
    headers = {"content-type": "application/json"}
    with django_capture_on_commit_callbacks(execute=True):
        response = Client().post(_url(open_hook), data=fixture.body, **wsgi_headers(headers))
    assert response.status_code == 202  # the unguessable URL token alone
    open_hook.signing_secret = "test_shared_token_do_not_use"
    open_hook.save()
    refused = Client().post(_url(open_hook), data=fixture.body + b" ", **wsgi_headers(headers))
    assert refused.status_code == 401  # a secret configured: the X-Webhook-Token header must carry it
    wrong = {**headers, "x-webhook-token": "nope"}
    assert Client().post(_url(open_hook), data=fixture.body + b" ", **wsgi_headers(wrong)).status_code == 401
    assert WebhookEvent.objects.count() == 1
    stored = WebhookEvent.objects.get()
    assert "authorization" not in stored.headers and "x-webhook-token" not in stored.headers


def test_front_challenge_is_echoed_and_not_stored(actors):
    fixture = load("front-inbound-rule_webhook.json")
    front = Integration.objects.create(organization=actors.org, kind="front", signing_secret=fixture.secret)
    headers = {**fixture.headers, "x-front-challenge": "abc123"}
    response = Client().post(_url(front), data=fixture.body, **wsgi_headers(headers))
    assert response.status_code == 200 and response.content == b"abc123"
    assert WebhookEvent.objects.count() == 0


def test_svix_published_test_vector_verifies_at_its_time():
    vector = json.loads(fixture_path("standardwebhooks-svix-doc-test-vector.json").read_text())
    body = vector["raw_body"].encode()
    signature_verify(kind="standard", headers=vector["headers"], body=body, secret=vector["secret"], now=1614265330)
    with pytest.raises(SignatureError):
        signature_verify(kind="standard", headers=vector["headers"], body=body, secret=vector["secret"])


def test_out_of_order_update_never_moves_a_ticket_back(actors, django_capture_on_commit_callbacks):
    zendesk = Integration.objects.create(
        organization=actors.org, kind="zendesk", signing_secret="test_zendesk_signing_secret_do_not_use"
    )
    created, comment = load("zendesk-ticket.created.json"), load("zendesk-ticket.comment_added.json")
    with django_capture_on_commit_callbacks(execute=True):
        for fixture in (comment, created):  # the newer event arrives first
            response = Client().post(_url(zendesk), data=fixture.body, **wsgi_headers(fixture.signed_now()))
            assert response.status_code == 202
    ticket = Ticket.objects.get(integration=zendesk, external_id="48213")
    assert ticket.status == "open"  # not moved back to "new" by the older event
    bodies = set(
        TicketMessage.objects.filter(ticket=ticket).exclude(author_role="agent").values_list("external_id", flat=True)
    )
    assert bodies == {"description", "27100000000001"}  # the older event's message still joins recall memory


def test_sweeper_dispatches_stuck_events(standard):
    body, msg_id = message_event(7, role="staff")
    response = _send(standard, body, msg_id)  # on_commit callbacks not run: as if the broker had been down
    assert response.status_code == 202
    event = WebhookEvent.objects.get()
    assert event.status == "received"
    assert webhooks_sweep_task() == {"events": 0, "deliveries": 0}  # not stuck yet: within the grace period
    WebhookEvent.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert webhooks_sweep_task() == {"events": 1, "deliveries": 0}
    event.refresh_from_db()
    assert event.status == "processed"
    assert TicketMessage.objects.filter(external_id="m-7").count() == 1


def test_failing_event_backs_off_then_dies_after_n_attempts_and_replays(actors, standard, settings, monkeypatch):
    settings.SUPPORTMEM_WEBHOOK_MAX_ATTEMPTS = 3
    body, msg_id = message_event(8, role="staff")
    assert _send(standard, body, msg_id).status_code == 202
    event = WebhookEvent.objects.get()

    def database_hiccup(**kwargs):
        raise IntegrityError("simulated database failure")

    monkeypatch.setattr(intake, "ticket_upsert", database_hiccup)
    for attempt in (1, 2, 3):
        assert intake.webhook_event_process(event_id=event.pk) == ("failed" if attempt < 3 else "dead")
        event.refresh_from_db()
        assert event.attempts == attempt and "simulated" in event.last_error
        if attempt < 3:
            assert event.next_attempt_at > timezone.now()  # backoff before the sweeper may try again
    assert intake.webhook_event_process(event_id=event.pk) == "skipped"
    monkeypatch.undo()

    admin = Client()
    admin.force_login(actors.staff)
    response = admin.post(
        "/admin/tickets/webhookevent/", {"action": "replay", "_selected_action": [event.pk]}, follow=True
    )
    assert f"Event {event.pk}: processed." in response.content.decode()  # the replay says what happened
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("processed", 1)
    assert intake.webhook_event_process(event_id=event.pk) == "skipped"
    assert TicketMessage.objects.filter(external_id="m-8").count() == 1


def test_webhook_inbox_is_scoped_to_the_staff_organisation(actors, standard):
    assert _send(standard, message_event(9)[0], "msg_9").status_code == 202
    other = Client()
    other.force_login(actors.other_staff)
    event = WebhookEvent.objects.get()
    assert other.get("/admin/tickets/webhookevent/").content.count(b"message.created") == 0
    assert other.get(f"/admin/tickets/webhookevent/{event.pk}/change/").status_code in (302, 404)
    mine = Client()
    mine.force_login(actors.staff)
    assert b"message.created" in mine.get("/admin/tickets/webhookevent/").content


def test_create_integration_creates_updates_and_prints_the_url_last(actors):
    out = StringIO()
    call_command("create_integration", "--org", "acme", "--kind", "zendesk", "--secret", "zd-secret", stdout=out)
    integration = Integration.objects.get(organization=actors.org, kind="zendesk")
    assert out.getvalue().strip().splitlines()[-1] == f"/webhooks/zendesk/{integration.webhook_token}/"
    assert integration.signing_secret == "zd-secret"
    out = StringIO()
    call_command(
        "create_integration", "--org", "acme", "--kind", "zendesk", "--reply-mode", "public",
        "--outbound-url", "https://acme.zendesk.com", "--credentials", '{"email": "a@b.c", "api_token": "t"}',
        stdout=out,
    )  # fmt: skip
    integration.refresh_from_db()
    assert integration.signing_secret == "zd-secret"  # kept when not given
    assert (integration.reply_mode, integration.outbound_base_url) == ("public", "https://acme.zendesk.com")
    assert out.getvalue().strip().splitlines()[-1] == f"/webhooks/zendesk/{integration.webhook_token}/"
    assert Integration.objects.filter(organization=actors.org, kind="zendesk").count() == 1


def test_create_integration_generates_secrets_where_we_may_and_refuses_bad_input(actors):
    out = StringIO()
    call_command("create_integration", "--org", "acme", "--kind", "standard", stdout=out)
    assert Integration.objects.get(kind="standard").signing_secret.startswith("whsec_")
    with pytest.raises(CommandError, match="--secret is required"):
        call_command("create_integration", "--org", "acme", "--kind", "intercom")
    with pytest.raises(CommandError, match="no organisation"):
        call_command("create_integration", "--org", "nope", "--kind", "freshdesk")
    with pytest.raises(CommandError, match="JSON"):
        call_command("create_integration", "--org", "acme", "--kind", "freshdesk", "--credentials", "{")
    assert not Integration.objects.filter(kind="freshdesk").exists()


@pytest.mark.parametrize("stamp", ["9" * 400, "-" + "9" * 30, "0001-01-01T00:00:00-23:59", "not-a-time"])
def test_absurd_timestamps_are_401_never_500(actors, stamp):
    zendesk = Integration.objects.create(organization=actors.org, kind="zendesk", signing_secret="s")
    front = Integration.objects.create(organization=actors.org, kind="front", signing_secret="s")
    body = b'{"type": "zen:event-type:ticket.created"}'
    cases = [
        (
            standard_integration(actors),
            {"webhook-id": "msg_x", "webhook-timestamp": stamp, "webhook-signature": "v1,x"},
        ),
        (zendesk, {"x-zendesk-webhook-signature": "x", "x-zendesk-webhook-signature-timestamp": stamp}),
        (front, {"x-front-signature": "x", "x-front-request-timestamp": stamp}),
    ]
    for integration, headers in cases:
        response = Client().post(_url(integration), data=body, content_type="application/json", **wsgi_headers(headers))
        assert response.status_code == 401, (integration.kind, stamp)
    assert WebhookEvent.objects.count() == 0


def standard_integration(actors) -> Integration:
    return Integration.objects.create(organization=actors.org, kind="standard", signing_secret=WHSEC)


def test_unreadable_times_inside_a_verified_payload_make_the_event_dead_not_retried(
    standard, django_capture_on_commit_callbacks
):
    body = json.dumps(
        {"type": "ticket.updated", "data": {"id": "t1", "requester": {"id": "c1"}, "updated_at": 10**30}}
    ).encode()
    with django_capture_on_commit_callbacks(execute=True):
        assert _send(standard, body).status_code == 202
    event = WebhookEvent.objects.get()
    assert event.status == "dead" and "unreadable time" in event.last_error


def test_solved_ticket_from_a_webhook_starts_one_consolidation_run(standard, django_capture_on_commit_callbacks):
    from support_agent.models import AgentRun

    body, msg_id = message_event(11, ticket="solve-1", text="The exchange arrived, thanks!")
    solved = json.dumps(
        {"type": "ticket.updated", "data": {"id": "solve-1", "status": "solved", "requester": {"id": "cust-11"}}}
    ).encode()
    with django_capture_on_commit_callbacks(execute=True):
        assert _send(standard, body, msg_id).status_code == 202
        assert _send(standard, solved, "msg_solved").status_code == 202
        assert _send(standard, solved, "msg_solved_again").status_code == 202  # solved twice: still one run
    ticket = Ticket.objects.get(integration=standard, external_id="solve-1")
    assert ticket.status == "solved" and ticket.solved_at is not None
    assert AgentRun.objects.filter(ticket=ticket, trigger="consolidation").count() == 1
    assert AgentRun.objects.filter(ticket=ticket, trigger="message").count() == 1
