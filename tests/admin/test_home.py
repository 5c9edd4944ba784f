"""The admin home screen: what needs attention in the staff member's organisation, and nothing of another's."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from support_agent.models import AgentRun
from tickets.models import ImportJob, Integration, WebhookEvent


@pytest.fixture
def staff_client(actors) -> Client:
    client = Client()
    client.force_login(actors.staff)
    return client


def card_count(html: str, key: str) -> int:
    found = re.search(rf'data-key="{key}">\s*<strong class="sm-attention-count">(\d+)</strong>', html)
    assert found, f"no card {key}"
    return int(found.group(1))


def _dead_event(organization, n: int) -> None:
    integration = Integration.objects.create(organization=organization, kind="zendesk", name=f"zd {organization.slug}")
    for i in range(n):
        WebhookEvent.objects.create(
            integration=integration,
            organization=organization,
            delivery_key=f"d-{i}",
            raw_body="{}",
            status=WebhookEvent.Status.DEAD,
            last_error="payload has no requester",
        )


def test_home_counts_what_needs_attention_in_my_organisation_only(staff_client, actors, memory):
    _dead_event(actors.org, 2)
    _dead_event(actors.other_org, 5)
    stuck = AgentRun.objects.create(
        organization=actors.org, customer=actors.customer, trigger=AgentRun.Trigger.WIDGET, status="running"
    )
    AgentRun.objects.filter(pk=stuck.pk).update(created_at=timezone.now() - timedelta(hours=1))
    AgentRun.objects.create(
        organization=actors.org, customer=actors.customer, trigger=AgentRun.Trigger.MESSAGE, status="failed"
    )
    AgentRun.objects.create(
        organization=actors.other_org, customer=actors.stranger, trigger=AgentRun.Trigger.MESSAGE, status="failed"
    )
    long_ago = timezone.now() - timedelta(hours=1)
    ImportJob.objects.create(organization=actors.org, source_file="a.ndjson", status="failed", last_error="401")
    ImportJob.objects.create(organization=actors.org, source_file="b.ndjson", status="running", heartbeat_at=long_ago)
    ImportJob.objects.create(organization=actors.org, source_file="c.ndjson", status="running", heartbeat_at=None)
    ImportJob.objects.create(organization=actors.org, source_file="d.ndjson", status="finished")
    ImportJob.objects.create(organization=actors.other_org, source_file="e.ndjson", status="failed")

    html = staff_client.get("/admin/").content.decode()

    assert card_count(html, "pending_edits") == 2  # the fixture's two agent edits waiting for review
    assert card_count(html, "dead_events") == 2  # not the other organisation's five
    assert card_count(html, "failed_runs") == 1
    assert card_count(html, "stuck_runs") == 1
    assert card_count(html, "dead_deliveries") == 0
    assert card_count(html, "stopped_imports") == 2  # the failed one and the one killed an hour ago
    assert "/admin/memory/pendingmemoryedit/" in html
    assert "/admin/tickets/webhookevent/?status__exact=dead" in html
    assert html.count('class="sm-spark-bar"') == 6 * 14  # a 14-day series per card


def test_home_says_so_when_nothing_waits(staff_client, actors):
    html = staff_client.get("/admin/").content.decode()
    assert "Nothing is waiting" in html
    assert "What needs attention" in html


def test_one_customers_list_with_plain_labels(staff_client, actors, memory):
    home = staff_client.get("/admin/").content.decode()
    assert "/admin/support_agent/customermemory/" in home
    assert 'href="/admin/tickets/customer/"' not in home  # the record admin is reached from the customer page
    listing = staff_client.get("/admin/support_agent/customermemory/").content.decode()
    assert "Select customer to change" in listing and "customer memory" not in listing.lower()
    page = staff_client.get(f"/admin/support_agent/customermemory/{actors.customer.pk}/change/").content.decode()
    assert f"/admin/tickets/customer/{actors.customer.pk}/change/" in page
    assert "0 minutes ago" not in page and "now" in page  # "Last changed now", not "0 minutes ago"
    assert "customer since " + actors.solved_ticket.created_at.strftime("%b") in page  # the history's start


def test_a_missing_page_is_a_styled_404(staff_client, actors):
    response = staff_client.get("/admin/tickets/customer/987654/change/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "There is nothing here" in html and "supportmem" in html and "<style>" in html
    other = staff_client.get(f"/admin/support_agent/customermemory/{actors.stranger.pk}/change/")
    assert other.status_code == 404 and "There is nothing here" in other.content.decode()
