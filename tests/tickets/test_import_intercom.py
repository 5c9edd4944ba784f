"""Intercom history import against a loopback fake that speaks the conversation search and retrieve API: cursor
paging; then what only Intercom does: the POSTed search with its updated_at filter, the Intercom-Version header
and the X-RateLimit-* headers. The checks every vendor shares are test_import_vendors.py's."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Actors
from tests.tickets import import_harness as harness
from tests.tickets.import_cases import INTERCOM as CASE
from tickets.helpdesk_fakes.intercom import FakeIntercom
from tickets.helpdesks.history import ImportAuthError
from tickets.helpdesks.intercom import IntercomReader
from tickets.imports import import_job_run, import_job_start
from tickets.models import ImportJob, Integration, Ticket, TicketMessage


def test_paginated_import_stores_every_ticket_once_with_ids_roles_and_embeddings(actors: Actors) -> None:
    fake = harness.check_paginated_import(CASE, actors.org)
    searches = [r for r in fake.seen if r.method == "POST"]
    assert len(searches) == 3  # 10 + 10 + 5 conversations
    assert len([r for r in fake.seen if r.method == "GET"]) == 25  # one retrieve per conversation
    cursors = [json.loads(r.body)["pagination"].get("starting_after") for r in searches]
    assert cursors[0] is None and all(cursors[1:])  # the first page has no cursor, the next ones the one given
    # Closing parts without words (every solved conversation has one) are not messages.
    closed = Ticket.objects.filter(organization=actors.org, status="closed").first()
    assert closed is not None and closed.messages.count() == 5


# ---------------------------------------------------------------- what only Intercom does


def test_since_is_the_search_filter_and_every_request_names_the_api_version(actors: Actors) -> None:
    with FakeIntercom(tickets=12, comments=2) as fake:
        integration = harness.connect(CASE, actors.org, fake)
        since = fake.updated(8)
        job, _ = import_job_start(organization=actors.org, integration=integration, since=since, consolidate=False)
        job = import_job_run(job_id=job.pk, reader=IntercomReader(integration, per_page=3))
    assert job.status == ImportJob.Status.FINISHED, job.last_error
    assert (job.tickets_done, job.messages_done, job.tickets_total) == (5, 10, 5)  # conversations 8 to 12
    stored = set(Ticket.objects.filter(integration=integration).values_list("external_id", flat=True))
    assert stored == {CASE.ticket_id(n) for n in range(8, 13)}
    searches = [json.loads(r.body) for r in fake.seen if r.method == "POST"]
    assert {json.dumps(s["query"], sort_keys=True) for s in searches} == {
        json.dumps({"field": "updated_at", "operator": ">", "value": int(since.timestamp())}, sort_keys=True)
    }
    assert all(s["pagination"]["per_page"] == 3 for s in searches)
    assert {r.headers.get("intercom-version") for r in fake.seen} == {"2.11"}
    assert {r.headers.get("authorization") for r in fake.seen} == {"Bearer intercom-access-token"}


def test_a_spent_rate_budget_waits_for_the_reset_instead_of_collecting_429s(actors: Actors) -> None:
    waits: list[float] = []
    with FakeIntercom(tickets=9, comments=2, rate_limit=4) as fake:
        integration = harness.connect(CASE, actors.org, fake)
        reader = IntercomReader(integration, per_page=5)
        reader.client.sleep = waits.append
        job = harness.run(CASE, actors.org, reader=reader)
    assert job.status == ImportJob.Status.FINISHED, job.last_error
    assert TicketMessage.objects.filter(ticket__integration=integration).count() == 18
    # 11 requests (2 searches, 9 retrieves): X-RateLimit-Remaining said 0 on the 4th and the 8th.
    assert len(fake.requests) == 11 and len(waits) == 2
    assert all(0 < wait <= 31 for wait in waits)  # until X-RateLimit-Reset, an epoch 30 s ahead (sleep is faked)
    assert reader.client.stats.retries == 0


def test_missing_access_token_is_one_clear_error(actors: Actors) -> None:
    integration = Integration.objects.create(organization=actors.org, kind="intercom", outbound_credentials={})
    with pytest.raises(ImportAuthError, match="needs credentials: access_token"):
        IntercomReader(integration)


def test_a_conversation_without_a_contact_is_an_item_error_and_the_rest_import(actors: Actors) -> None:
    class NoContactFor3(FakeIntercom):
        def conversation_json(self, n: int, parts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
            body = super().conversation_json(n, parts)
            if n == 3:
                body["contacts"]["contacts"] = []
                body["source"]["author"] = self.admin()  # an outbound message: no customer wrote it
            return body

    with NoContactFor3(tickets=5, comments=2) as fake:
        integration = harness.connect(CASE, actors.org, fake)
        job = harness.run(CASE, actors.org, page_size=10)
    assert job.status == ImportJob.Status.FINISHED, job.last_error
    assert (job.tickets_done, job.errors) == (4, 1)
    assert f"conversation {CASE.ticket_id(3)}" in json.dumps(job.error_log)
    assert not Ticket.objects.filter(integration=integration, external_id=CASE.ticket_id(3)).exists()


def test_without_since_the_search_starts_at_the_epoch_and_gives_the_total(actors: Actors) -> None:
    with FakeIntercom(tickets=3, comments=2) as fake:
        harness.connect(CASE, actors.org, fake)
        job = harness.run(CASE, actors.org)
    first = json.loads(next(r for r in fake.seen if r.method == "POST").body)
    assert first["query"]["value"] == 0
    assert job.tickets_total == 3  # the search's total_count, for progress and ETA
