"""Zammad history import against a loopback fake of the REST API (tickets by pages with expand=true, articles by
ticket, users read once): paging, merged tickets, --since, OAuth and missing credentials. The checks every vendor
shares are test_import_vendors.py's."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import Actors
from tests.tickets import import_harness as harness
from tests.tickets.import_cases import ZAMMAD as CASE
from tests.tickets.import_cases import ZAMMAD_CREDENTIALS as CREDENTIALS
from tickets.helpdesk_fakes.common import AGENT_ID
from tickets.helpdesk_fakes.zammad import FakeZammad
from tickets.helpdesks.history import ImportAuthError, ImportSourceError
from tickets.helpdesks.zammad import ZammadReader
from tickets.models import Integration, Ticket


def test_paginated_import_stores_every_ticket_once_with_ids_roles_and_embeddings(actors: Actors) -> None:
    fake = harness.check_paginated_import(CASE, actors.org)
    lists = [parse_qs(urlsplit(target).query) for target in fake.requests if "/api/v1/tickets?" in target]
    # 10 + 10 + 5, then the empty page that ends Zammad's list (it gives no total).
    assert [(q["page"], q["per_page"], q["expand"]) for q in lists] == [
        (["1"], ["10"], ["true"]),
        (["2"], ["10"], ["true"]),
        (["3"], ["10"], ["true"]),
        (["4"], ["10"], ["true"]),
    ]
    assert sorted(fake.user_reads) == sorted([AGENT_ID, *(1_000_000 + number for number in range(7))])  # once each
    ticket = Ticket.objects.get(organization=actors.org, external_id="4")
    assert (ticket.status, ticket.priority, ticket.channel) == ("closed", "normal", "email")
    assert ticket.customer.name == "Customer 4"


def test_merged_tickets_are_skipped(actors: Actors) -> None:
    merged = replace(CASE, fake=lambda **options: FakeZammad(merged=(2, 5), **options))
    with merged.fake(tickets=6, comments=2) as fake:
        harness.connect(merged, actors.org, fake)
        job = harness.run(merged, actors.org, page_size=4)
    assert (job.tickets_done, job.messages_done, job.errors) == (4, 8, 0)
    stored = set(Ticket.objects.filter(integration__kind="zammad").values_list("external_id", flat=True))
    assert stored == {"1", "3", "4", "6"}
    assert not [target for target in fake.requests if "/by_ticket/2" in target or "/by_ticket/5" in target]


def test_since_keeps_tickets_updated_since_then(actors: Actors) -> None:
    with CASE.fake(tickets=12, comments=2) as fake:
        integration = harness.connect(CASE, actors.org, fake)
        reader = ZammadReader(integration, per_page=5)
        pages = list(reader.pages(cursor="", since=fake.updated(7)))
        reader.close()
    assert [[t["id"] for t in page.items] for page in pages] == [[], [7, 8, 9, 10], [11, 12], []]
    assert [page.done for page in pages] == [False, False, False, True]


def test_oauth_token_is_sent_as_bearer(actors: Actors) -> None:
    with FakeZammad(tickets=1, comments=1, token="unused") as fake:
        integration = Integration.objects.create(
            organization=actors.org,
            kind="zammad",
            outbound_base_url=fake.url,
            outbound_credentials={"oauth_token": "oauth-abc"},
        )
        reader = ZammadReader(integration)
        with pytest.raises(ImportAuthError, match="Zammad rejected the credentials"):
            list(reader.pages(cursor="", since=None))
        reader.close()
    assert fake.seen[0].headers["authorization"] == "Bearer oauth-abc"


def test_missing_credentials_or_base_url_are_named(actors: Actors) -> None:
    no_token = Integration.objects.create(
        organization=actors.org, kind="zammad", outbound_base_url="https://zammad.example.com"
    )
    with pytest.raises(ImportAuthError, match=r"api_token .* or oauth_token"):
        ZammadReader(no_token)
    no_url = Integration.objects.create(organization=actors.other_org, kind="zammad", outbound_credentials=CREDENTIALS)
    with pytest.raises(ImportSourceError, match="needs outbound_base_url"):
        ZammadReader(no_url)
