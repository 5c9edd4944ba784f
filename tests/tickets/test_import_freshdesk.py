"""Freshdesk history import against a loopback fake of API v2 (Basic auth with the API key, Link-header pages of
tickets and conversations): paging, the list's parameters, the 300-page limit passed by going on from the last
update seen, the rate-limit headers, credentials, and ids that match the automation webhook's. The checks every
vendor shares are test_import_vendors.py's."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import Actors
from tests.tickets import import_harness as harness
from tests.tickets.import_cases import FRESHDESK as CASE
from tests.tickets.import_cases import freshdesk_fake as _fake
from tickets.helpdesk_fakes.freshdesk import FakeFreshdesk
from tickets.helpdesks.base import digest_id
from tickets.helpdesks.freshdesk import FreshdeskReader
from tickets.helpdesks.history import ImportAuthError, ImportSourceError
from tickets.models import ImportJob, Integration, TicketMessage


def _list_queries(fake: FakeFreshdesk) -> list[dict[str, str]]:
    return [
        {key: values[-1] for key, values in parse_qs(urlsplit(target).query).items()}
        for target in fake.requests
        if target.startswith("/api/v2/tickets?")
    ]


def test_paginated_import_stores_every_ticket_once_with_ids_roles_and_embeddings(actors: Actors) -> None:
    fake = harness.check_paginated_import(CASE, actors.org)
    queries = _list_queries(fake)
    assert [q["page"] for q in queries] == ["1", "2", "3"]  # 10 + 10 + 5 tickets, by the Link header
    for query in queries:
        assert (query["order_by"], query["order_type"], query["per_page"]) == ("updated_at", "asc", "10")
        assert query["updated_since"] == "1970-01-01T00:00:00Z"  # else Freshdesk lists only the last 30 days
        assert query["include"] == "requester,description"
    # Four conversations a ticket, two a page.
    assert len([r for r in fake.requests if "/conversations" in r]) == 25 * 2
    assert len([r for r in fake.requests if r.startswith("/api/v2/agents")]) == 1  # agents' names, once


def test_past_the_300_page_limit_the_list_goes_on_from_the_last_update_seen(actors: Actors) -> None:
    """Freshdesk refuses pages beyond 300; the reader starts again from the newest updated_at it has read."""
    limited = replace(
        CASE,
        fake=lambda **options: _fake(max_pages=2, **options),
        reader=lambda integration, size: FreshdeskReader(integration, per_page=size, max_pages=2),
    )
    with limited.fake(tickets=23, comments=2) as fake:
        harness.connect(limited, actors.org, fake)
        job = harness.run(limited, actors.org, page_size=5)
    assert job.status == ImportJob.Status.FINISHED, job.last_error
    assert (job.tickets_done, job.messages_done, job.errors) == (23, 46, 0)
    queries = _list_queries(fake)
    assert max(int(q["page"]) for q in queries) == 2
    restarts = [q["updated_since"] for q in queries if q["page"] == "1"]
    assert restarts[0] == "1970-01-01T00:00:00Z" and restarts[1:] == sorted(restarts[1:]) and len(restarts) >= 3


def test_a_spent_rate_budget_pauses_before_the_next_request(actors: Actors) -> None:
    with _fake(tickets=3, comments=2, rate_total=7) as fake:  # the list costs 5 credits, the rest 1
        integration = harness.connect(CASE, actors.org, fake)
        reader = FreshdeskReader(integration, per_page=5)
        waits: list[float] = []
        reader.client.sleep = waits.append
        job = harness.run(CASE, actors.org, reader=reader)
    assert job.status == ImportJob.Status.FINISHED
    assert waits and all(wait == 1.0 for wait in waits)  # X-RateLimit-Remaining: 0, no reset time given


def test_a_429_waits_as_long_as_retry_after_says(actors: Actors) -> None:
    from tickets.helpdesk_fakes.common import Fault

    with _fake(tickets=3, comments=2, faults=[Fault("/conversations", "429", retry_after=3.0)]) as fake:
        integration = harness.connect(CASE, actors.org, fake)
        reader = FreshdeskReader(integration)
        waits: list[float] = []
        reader.client.sleep = waits.append
        job = harness.run(CASE, actors.org, reader=reader)
    assert job.status == ImportJob.Status.FINISHED and waits == [3.0]


def test_credentials_missing_or_wrong_give_one_clear_error(actors: Actors) -> None:
    no_key = Integration(organization=actors.org, kind="freshdesk", outbound_credentials={"domain": "acme"})
    with pytest.raises(ImportAuthError, match="needs credentials: api_key"):
        FreshdeskReader(no_key)
    receiver_only = Integration(
        organization=actors.org,
        kind="freshdesk",
        outbound_base_url="https://receiver.example.com/replies",
        outbound_credentials={"api_key": "k"},
    )
    with pytest.raises(ImportSourceError, match="needs its account's domain"):
        FreshdeskReader(receiver_only)
    named = Integration(
        organization=actors.org, kind="freshdesk", outbound_credentials={"api_key": "k", "domain": "acme"}
    )
    assert FreshdeskReader(named).base == "https://acme.freshdesk.com"
    with _fake(tickets=2, comments=2) as fake:
        Integration.objects.create(
            organization=actors.org, kind="freshdesk", outbound_credentials={"api_key": "wrong", "domain": fake.url}
        )
        with pytest.raises(ImportAuthError, match=r"Freshdesk rejected the credentials \(401 on /api/v2/tickets\)"):
            harness.run(CASE, actors.org)
    assert len(fake.requests) == 1  # not retried
    assert not TicketMessage.objects.filter(ticket__integration__kind="freshdesk").exists()


def test_the_same_words_twice_in_a_ticket_are_two_messages(actors: Actors) -> None:
    """A reply's id comes from its text (as the webhook parser's does); a repeat gets its own."""
    fake = _fake(tickets=1, comments=3)
    repeated = fake.comment_body(1, 1)
    fake.comment_body = lambda n, j: repeated if j == 2 else FakeFreshdesk.comment_body(fake, n, j)  # type: ignore[method-assign]
    with fake:
        harness.connect(CASE, actors.org, fake)
        job = harness.run(CASE, actors.org)
    assert job.messages_done == 3
    ids = list(
        TicketMessage.objects.filter(ticket__external_id="1")
        .order_by("created_at")
        .values_list("external_id", flat=True)
    )
    first = digest_id("comment-", repeated)
    assert ids == ["description", first, f"{first}-2"]
