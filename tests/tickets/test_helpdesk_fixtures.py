"""Every helpdesk fixture replayed end to end through the real URL, signed the vendor's way: the right customer,
ticket, message texts, author roles, public/internal flags and status land, and a repeat creates nothing."""

from __future__ import annotations

import json
import logging

import pytest
from django.test import Client

from tests.tickets.webhook_fixtures import REPLAYS, Replay, fixture_path, replay_load, wsgi_headers
from tickets import intake
from tickets.helpdesks import HELPDESKS
from tickets.models import CustomerIdentity, Integration, Ticket, TicketMessage, WebhookEvent


def _post(integration: Integration, replay: Replay):
    url = f"/webhooks/{integration.kind}/{integration.webhook_token}/"
    return Client().post(url, data=replay.body, **wsgi_headers(replay.signed()))


def _deliver(integration: Integration, replay: Replay, capture) -> WebhookEvent:
    with capture(execute=True):
        response = _post(integration, replay)
    assert response.status_code == 202, (replay.name, response.content)
    return WebhookEvent.objects.get(pk=response.json()["event_id"])


def test_every_helpdesk_has_six_replayed_fixtures_with_provenance():
    for kind in HELPDESKS:
        names = [n for n in REPLAYS if fixture_path(n).parent.name == kind]
        legacy = [p for p in fixture_path(names[0]).parent.glob("*.json") if '"request"' in p.read_text()]
        assert len(names) + len(legacy) >= 6, kind
    for name in REPLAYS:
        assert len(replay_load(name).provenance) > 40, name


@pytest.mark.parametrize("name", REPLAYS)
def test_fixture_lands_as_the_vendor_meant_it(actors, name, django_capture_on_commit_callbacks):
    replay = replay_load(name)
    integration = Integration.objects.create(organization=actors.org, kind=replay.kind, signing_secret=replay.secret)
    for earlier in replay.before:
        _deliver(integration, replay_load(earlier), django_capture_on_commit_callbacks)
    event = _deliver(integration, replay, django_capture_on_commit_callbacks)
    expect = replay.expect
    event.refresh_from_db()
    assert event.status == expect.get("status", "processed"), event.last_error
    if "event_type" in expect:
        assert event.event_type == expect["event_type"]
    if event.status != WebhookEvent.Status.PROCESSED:
        assert Ticket.objects.filter(integration=integration).count() == 0
        return
    identity = CustomerIdentity.objects.select_related("customer").get(
        organization=actors.org, source=replay.kind, external_id=expect["customer"]["identity"]
    )
    customer = identity.customer
    for field in ("email", "name"):
        if field in expect["customer"]:
            assert getattr(customer, field) == expect["customer"][field]
    ticket = Ticket.objects.get(integration=integration, external_id=expect["ticket"]["id"])
    assert ticket.customer_id == customer.pk == event.customer_id
    assert ticket.status == expect["ticket"]["status"]
    if "priority" in expect["ticket"]:
        assert ticket.priority == expect["ticket"]["priority"]
    stored = list(ticket.messages.exclude(author_role=TicketMessage.Role.AGENT))
    assert len(stored) == len(expect["messages"]), [m.body for m in stored]
    for wanted in expect["messages"]:
        match = [m for m in stored if wanted["id"] is None or m.external_id == wanted["id"]]
        match = [m for m in match if m.body == wanted["text"]]
        assert len(match) == 1, (wanted, [(m.external_id, m.body) for m in stored])
        message = match[0]
        assert (message.author_role, message.is_public) == (wanted["role"], wanted["public"])
        assert message.customer_id == customer.pk
        if "attachments" in wanted:
            assert message.metadata["attachments"] == wanted["attachments"]
        if "author" in wanted:
            assert message.author_name == wanted["author"]


@pytest.mark.parametrize("name", REPLAYS)
def test_fixture_repeated_creates_nothing(actors, name, django_capture_on_commit_callbacks):
    replay = replay_load(name)
    integration = Integration.objects.create(organization=actors.org, kind=replay.kind, signing_secret=replay.secret)
    _deliver(integration, replay, django_capture_on_commit_callbacks)
    before = (WebhookEvent.objects.count(), TicketMessage.objects.count(), Ticket.objects.count())
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        repeat = _post(integration, replay)
    assert repeat.status_code == 200 and repeat.json()["status"] == "duplicate"
    assert callbacks == []
    assert (WebhookEvent.objects.count(), TicketMessage.objects.count(), Ticket.objects.count()) == before


@pytest.mark.parametrize("name", [n for n in REPLAYS if replay_load(n).kind in {"chatwoot", "zammad"}])
def test_tampered_body_is_refused(actors, name):
    replay = replay_load(name)
    integration = Integration.objects.create(organization=actors.org, kind=replay.kind, signing_secret=replay.secret)
    headers = replay.signed()
    tampered = replay.body + b" "
    response = Client().post(
        f"/webhooks/{integration.kind}/{integration.webhook_token}/", data=tampered, **wsgi_headers(headers)
    )
    assert response.status_code == 401
    assert WebhookEvent.objects.count() == 0


def test_unknown_ticket_without_requester_is_dead_with_the_reason(actors, django_capture_on_commit_callbacks):
    replay = replay_load("zendesk-agent_assignment_changed-no-requester.json")
    integration = Integration.objects.create(organization=actors.org, kind=replay.kind, signing_secret=replay.secret)
    event = _deliver(integration, replay, django_capture_on_commit_callbacks)
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.DEAD
    assert "no requester" in event.last_error and "not known" in event.last_error


def test_a_bug_in_a_parser_is_retried_and_logged_not_dead(
    actors, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    replay = replay_load("intercom-v1-conversation.user.created.json")
    integration = Integration.objects.create(organization=actors.org, kind=replay.kind, signing_secret=replay.secret)
    real = HELPDESKS["intercom"]

    def broken(event_type: str, headers: object, payload: dict) -> object:
        return payload["data"]["no such key"]  # the kind of slip a parser change can make

    monkeypatch.setitem(HELPDESKS, "intercom", real.__class__(**{**real.__dict__, "event_parse": broken}))
    with caplog.at_level(logging.ERROR, logger="tickets.intake"):
        event = _deliver(integration, replay, django_capture_on_commit_callbacks)
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.FAILED and event.next_attempt_at is not None
    assert "KeyError" in event.last_error
    assert any(record.exc_info and record.exc_info[0] is KeyError for record in caplog.records)
    # The parser is fixed: the retry processes the event.
    monkeypatch.setitem(HELPDESKS, "intercom", real)
    WebhookEvent.objects.filter(pk=event.pk).update(next_attempt_at=event.received_at)
    assert intake.webhook_event_process(event_id=event.pk) == WebhookEvent.Status.PROCESSED
    assert Ticket.objects.filter(integration=integration, external_id="30011223344").exists()


def test_fixture_bodies_are_json_objects():
    for name in REPLAYS:
        assert isinstance(json.loads(replay_load(name).body), dict)
