"""Admin replay: a dead event's page offers Replay and says what happened; log pages are read-only."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.tickets.webhook_fixtures import replay_load, wsgi_headers
from tickets.models import Integration, WebhookEvent


@pytest.fixture
def dead_event(actors, django_capture_on_commit_callbacks) -> WebhookEvent:
    """A Zendesk assignment change for a ticket nobody has seen: dead, for want of a requester."""
    replay = replay_load("zendesk-agent_assignment_changed-no-requester.json")
    integration = Integration.objects.create(organization=actors.org, kind="zendesk", signing_secret=replay.secret)
    with django_capture_on_commit_callbacks(execute=True):
        response = Client().post(
            f"/webhooks/zendesk/{integration.webhook_token}/", data=replay.body, **wsgi_headers(replay.signed())
        )
    event = WebhookEvent.objects.get(pk=response.json()["event_id"])
    assert event.status == WebhookEvent.Status.DEAD
    return event


def test_dead_event_page_has_replay_and_no_save(actors, dead_event):
    admin = Client()
    admin.force_login(actors.staff)
    page = admin.get(f"/admin/tickets/webhookevent/{dead_event.pk}/change/").content.decode()
    assert f"/admin/tickets/webhookevent/{dead_event.pk}/replay/" in page
    assert 'name="_save"' not in page and 'name="_continue"' not in page


def test_replay_button_says_still_dead_and_why(actors, dead_event, django_capture_on_commit_callbacks):
    admin = Client()
    admin.force_login(actors.staff)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(f"/admin/tickets/webhookevent/{dead_event.pk}/replay/", follow=True)
    text = response.content.decode()
    assert f"Event {dead_event.pk}: still dead" in text and "not known yet" in text
    dead_event.refresh_from_db()
    assert dead_event.status == WebhookEvent.Status.DEAD


def test_replay_is_post_only_and_scoped(actors, dead_event):
    admin = Client()
    admin.force_login(actors.staff)
    assert admin.get(f"/admin/tickets/webhookevent/{dead_event.pk}/replay/").status_code == 405
    other = Client()
    other.force_login(actors.other_staff)
    assert other.post(f"/admin/tickets/webhookevent/{dead_event.pk}/replay/").status_code == 404
