"""Help Scout history import against a loopback fake of the Mailbox API 2.0 (OAuth client credentials, HAL
pages of conversations and threads): paging, the token that expires mid-import and is fetched again, rejected
client credentials, the rate-limit headers and the drift-proof cursor. The checks every vendor shares are
test_import_vendors.py's."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import Actors
from tests.tickets import import_harness as harness
from tests.tickets.import_cases import HELPSCOUT as CASE
from tests.tickets.import_cases import helpscout_fake as _fake
from tickets.helpdesk_fakes.common import Fault
from tickets.helpdesk_fakes.helpscout import FakeHelpScout
from tickets.helpdesks.helpscout import HelpScoutReader
from tickets.helpdesks.history import ImportAuthError
from tickets.models import ImportJob, Integration, TicketMessage


def _list_queries(fake: FakeHelpScout) -> list[dict[str, str]]:
    return [
        {key: values[-1] for key, values in parse_qs(urlsplit(target).query).items()}
        for target in fake.requests
        if target.startswith("/v2/conversations?")
    ]


def test_paginated_import_stores_every_ticket_once_with_ids_roles_and_embeddings(actors: Actors) -> None:
    fake = harness.check_paginated_import(CASE, actors.org)
    queries = _list_queries(fake)
    assert all(q["status"] == "all" and (q["sortField"], q["sortOrder"]) == ("modifiedAt", "asc") for q in queries)
    assert "modifiedSince" not in queries[0] and all("modifiedSince" in q for q in queries[1:])
    # Five messages and a closing line item, two a page: every conversation's threads in three pages.
    threads = [t for t in fake.requests if "/threads" in t]
    assert len({t.split("?")[0] for t in threads}) == 25 and len(threads) == 25 * 3
    assert fake.token_requests == 1  # one token for the whole import


def test_an_access_token_that_expires_mid_import_is_fetched_again_and_the_import_goes_on(actors: Actors) -> None:
    """Help Scout tokens live two days: an import longer than that meets a 401, fetches a new token once per
    expiry and goes on, without losing or repeating anything."""
    with _fake(tickets=12, comments=3, token_uses=7) as fake:
        harness.connect(CASE, actors.org, fake)
        job = harness.run(CASE, actors.org)
    assert job.status == ImportJob.Status.FINISHED, job.last_error
    assert (job.tickets_done, job.messages_done, job.errors) == (12, 36, 0)
    assert fake.refused_tokens >= 3 and fake.token_requests >= 4  # a new token for each expiry
    assert TicketMessage.objects.filter(ticket__integration__kind="helpscout").count() == 36
    forms = [parse_qs(r.body.decode()) for r in fake.seen if r.target == "/v2/oauth2/token"]
    assert all(f["grant_type"] == ["client_credentials"] and f["client_id"] == ["app-client-id"] for f in forms)


def test_wrong_client_credentials_give_one_clear_error_and_store_nothing(actors: Actors) -> None:
    with _fake(tickets=3, comments=2) as fake:
        integration = Integration.objects.create(
            organization=actors.org,
            kind="helpscout",
            outbound_base_url=fake.url,
            outbound_credentials={"client_id": "app-client-id", "client_secret": "wrong"},
        )
        with pytest.raises(ImportAuthError, match=r"Help Scout rejected the credentials \(401 on /v2/oauth2/token\)"):
            harness.run(CASE, actors.org, reader=HelpScoutReader(integration))
    assert fake.token_requests == 1  # refused credentials are not retried
    assert not any(r.startswith("/v2/conversations") for r in fake.requests)
    assert not TicketMessage.objects.filter(ticket__integration__kind="helpscout").exists()


def test_missing_credentials_are_one_clear_error(actors: Actors) -> None:
    integration = Integration.objects.create(organization=actors.org, kind="helpscout", outbound_credentials={})
    with pytest.raises(ImportAuthError, match="needs credentials: client_id and client_secret"):
        HelpScoutReader(integration)


def test_a_429_waits_as_long_as_x_ratelimit_retry_after_says(actors: Actors) -> None:
    with _fake(tickets=4, comments=2, faults=[Fault("/v2/conversations?", "429", retry_after=2.0)]) as fake:
        integration = harness.connect(CASE, actors.org, fake)
        reader = HelpScoutReader(integration)
        waits: list[float] = []
        reader.client.sleep = waits.append
        job = harness.run(CASE, actors.org, reader=reader)
    assert job.status == ImportJob.Status.FINISHED
    assert waits == [2.0]  # Help Scout's own header, not Retry-After


def test_a_conversation_modified_during_the_import_does_not_make_the_next_one_skipped(actors: Actors) -> None:
    """Page numbers drift when a conversation moves to the end of a modifiedAt-sorted list mid-import (page 2
    would then start one conversation later); the cursor reads on from the newest modification seen instead, so
    every conversation is listed, and one read before comes back only because it changed."""
    with _fake(tickets=15, comments=2) as fake:
        reader = HelpScoutReader(harness.connect(CASE, actors.org, fake))
        pages = reader.pages(cursor="", since=None)
        listed = [c["id"] for c in next(pages).items]
        assert listed == [4_400_000 + n for n in range(1, 6)]
        original = fake.updated

        def updated(n: int) -> Any:  # conversation 2 gets a reply: it moves to the end of the list
            return original(n) if n != 2 else original(fake.tickets) + (original(1) - original(0))

        fake.updated = updated  # type: ignore[method-assign]
        for page in pages:
            listed.extend(c["id"] for c in page.items)
        reader.close()
    assert sorted(set(listed)) == [4_400_000 + n for n in range(1, 16)]
    assert len(listed) == 16 and listed[-1] == 4_400_002  # everything once, the changed one again at the end
