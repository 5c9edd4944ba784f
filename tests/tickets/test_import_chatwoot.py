"""Chatwoot history import against a loopback fake of the Application API (conversations paged oldest first,
messages read backwards with ``before``): paging, rack-attack's bare 429, --since and credentials. The checks
every vendor shares are test_import_vendors.py's."""

from __future__ import annotations

import time
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import Actors
from tests.tickets import import_harness as harness
from tests.tickets.import_cases import CHATWOOT as CASE
from tests.tickets.import_cases import CHATWOOT_CREDENTIALS as CREDENTIALS
from tickets.helpdesk_fakes.chatwoot import FakeChatwoot
from tickets.helpdesk_fakes.common import Fault
from tickets.helpdesks.chatwoot import ChatwootReader
from tickets.helpdesks.history import ImportAuthError
from tickets.models import ImportJob, Integration, Ticket, TicketMessage


def _queries(fake: FakeChatwoot, part: str) -> list[dict[str, list[str]]]:
    return [parse_qs(urlsplit(target).query) for target in fake.requests if part in target]


def test_paginated_import_stores_every_ticket_once_with_ids_roles_and_embeddings(actors: Actors) -> None:
    paged = replace(
        CASE,
        fake=lambda **options: FakeChatwoot(per_page=10, messages_page=2, **options),
        reader=lambda integration, size: ChatwootReader(integration, messages_page=2),
    )
    fake = harness.check_paginated_import(paged, actors.org)
    lists = _queries(fake, "/conversations?")
    assert [q["page"] for q in lists] == [["1"], ["2"], ["3"]]  # 10 + 10 + 5, no empty page asked for
    assert all(q["status"] == ["all"] and q["sort_by"] == ["created_at_asc"] for q in lists)
    # Messages two at a time, backwards: latest, then before the oldest seen, until a short page.
    ticket_four = [q.get("before") for q in _queries(fake, "/conversations/4/messages")]
    assert ticket_four == [None, ["4004"], ["4002"], ["4000"]]
    # Resolved conversations end with an activity line and every fifth has a deleted message: neither stored.
    assert not TicketMessage.objects.filter(body__contains="marked resolved").exists()
    assert not TicketMessage.objects.filter(body__contains="was deleted").exists()
    ticket = Ticket.objects.get(organization=actors.org, external_id="4")
    assert (ticket.channel, ticket.status, sorted(ticket.tags)) == ("email", "solved", ["imported", "topic4"])
    assert Ticket.objects.get(organization=actors.org, external_id="3").status == "open"


def test_a_bare_rack_attack_429_waits_for_the_next_one_minute_window(actors: Actors) -> None:
    """rack-attack's default 429 says nothing about when to come back; its windows are whole minutes of epoch
    time, so the reader waits until the next one instead of burning its retries a second apart."""
    waits: list[tuple[float, float]] = []
    faults = [Fault("/conversations?", "429"), Fault("/conversations/2/messages", "429")]
    with FakeChatwoot(tickets=3, comments=2, faults=faults, rack_attack=True) as fake:
        integration = harness.connect(CASE, actors.org, fake)
        reader = ChatwootReader(integration)
        reader.client.sleep = lambda seconds: waits.append((time.time(), seconds))
        job = harness.run(CASE, actors.org, reader=reader)
    assert (job.status, job.tickets_done, job.messages_done) == (ImportJob.Status.FINISHED, 3, 6)
    assert len(waits) == 2
    for asked_at, seconds in waits:
        assert 1.0 < seconds <= 61.0
        # The wait ends one second (for clock skew) after a whole minute of epoch time.
        assert abs((asked_at + seconds - 1.0 + 0.5) % 60 - 0.5) < 0.2


def test_since_keeps_conversations_active_since_then_and_the_total_is_left_open(actors: Actors) -> None:
    with CASE.fake(tickets=25, comments=2) as fake:
        integration = harness.connect(CASE, actors.org, fake)
        reader = ChatwootReader(integration)
        since = fake.updated(18)
        pages = list(reader.pages(cursor="", since=since))
        reader.close()
    assert [[c["id"] for c in page.items] for page in pages] == [[], [18, 19, 20], [21, 22, 23, 24, 25]]
    assert {page.total for page in pages} == {None}


def test_missing_credentials_name_what_is_needed(actors: Actors) -> None:
    integration = Integration.objects.create(
        organization=actors.org, kind="chatwoot", outbound_credentials={"api_access_token": "x"}
    )
    with pytest.raises(ImportAuthError, match=r"api_access_token .* and the numeric account_id"):
        ChatwootReader(integration)


def test_the_cloud_host_is_the_default_base(actors: Actors) -> None:
    integration = Integration.objects.create(organization=actors.org, kind="chatwoot", outbound_credentials=CREDENTIALS)
    reader = ChatwootReader(integration)
    reader.close()
    assert reader.account_url == "https://app.chatwoot.com/api/v1/accounts/7"
