"""Front history import against a loopback fake that speaks the Core API: conversations, messages and comments paged
by ``_pagination.next`` page tokens; then what only Front does: the ``after:`` search for --since, comments as
internal notes, trashed conversations and the X-RateLimit-* headers. The checks every vendor shares are
test_import_vendors.py's."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from tests.conftest import Actors
from tests.tickets import import_harness as harness
from tests.tickets.import_cases import FRONT as CASE
from tickets.helpdesk_fakes.front import FakeFront
from tickets.helpdesks.front import FrontReader
from tickets.helpdesks.history import ImportAuthError
from tickets.imports import import_job_run, import_job_start
from tickets.models import ImportJob, Integration, Ticket, TicketMessage


def test_paginated_import_stores_every_ticket_once_with_ids_roles_and_embeddings(actors: Actors) -> None:
    paged = replace(CASE, fake=lambda **options: FakeFront(messages_page_max=2, **options))
    fake = harness.check_paginated_import(paged, actors.org)
    assert len([r for r in fake.requests if "/conversations?" in r]) == 3  # 10 + 10 + 5 conversations
    assert len([r for r in fake.requests if "/messages?" in r]) == 25 * 2  # 4 messages a conversation, 2 a page
    assert len([r for r in fake.requests if "/comments?" in r]) == 25  # its one comment
    tokens = [parse_qs(urlsplit(r).query).get("page_token") for r in fake.requests if "/conversations?" in r]
    assert tokens[0] is None and all(tokens[1:])  # later pages ask with the page_token of _pagination.next


# ---------------------------------------------------------------- what only Front does


def test_since_searches_after_the_date_and_takes_the_total_from_the_search(actors: Actors) -> None:
    with FakeFront(tickets=12, comments=2) as fake:
        integration = harness.connect(CASE, actors.org, fake)
        since = fake.updated(8)
        job, _ = import_job_start(organization=actors.org, integration=integration, since=since, consolidate=False)
        job = import_job_run(job_id=job.pk, reader=FrontReader(integration, limit=3))
    assert job.status == ImportJob.Status.FINISHED, job.last_error
    assert (job.tickets_done, job.messages_done, job.tickets_total) == (5, 10, 5)  # conversations 8 to 12
    stored = set(Ticket.objects.filter(integration=integration).values_list("external_id", flat=True))
    assert stored == {CASE.ticket_id(n) for n in range(8, 13)}
    lists = [urlsplit(r.target) for r in fake.seen if "/conversations/search/" in r.target]
    assert {unquote(target.path) for target in lists} == {f"/conversations/search/after:{int(since.timestamp()) - 1}"}
    assert len(lists) == 2  # 3 + 2 conversations
    assert {r.headers.get("authorization") for r in fake.seen} == {"Bearer front-api-token"}


def test_trashed_conversations_are_skipped_and_comments_are_internal_staff_notes(actors: Actors) -> None:
    with FakeFront(tickets=6, comments=4, trashed=(2, 5)) as fake:
        integration = harness.connect(CASE, actors.org, fake)
        job = harness.run(CASE, actors.org, page_size=4)
    assert job.status == ImportJob.Status.FINISHED, job.last_error
    stored = set(Ticket.objects.filter(integration=integration).values_list("external_id", flat=True))
    assert stored == {CASE.ticket_id(n) for n in (1, 3, 4, 6)}
    assert not [r for r in fake.requests if "cnv_000002" in r or "cnv_000005" in r]  # not even read
    comment = TicketMessage.objects.get(ticket__integration=integration, external_id=fake.message_id(4, 3))
    assert (comment.author_role, comment.is_public, comment.author_name) == ("staff", False, "Sam Support")
    solved = Ticket.objects.get(integration=integration, external_id=CASE.ticket_id(4))
    assert (solved.status, solved.subject) == ("solved", fake.subject(4))  # archived
    assert set(solved.tags) == {"topic4"}


def test_a_spent_rate_budget_waits_for_the_reset_instead_of_collecting_429s(actors: Actors) -> None:
    waits: list[float] = []
    with FakeFront(tickets=5, comments=2, rate_limit=4) as fake:
        integration = harness.connect(CASE, actors.org, fake)
        reader = FrontReader(integration, limit=5)
        reader.client.sleep = waits.append
        job = harness.run(CASE, actors.org, reader=reader)
    assert job.status == ImportJob.Status.FINISHED, job.last_error
    assert TicketMessage.objects.filter(ticket__integration=integration).count() == 10
    # 11 requests (1 list, then messages and comments of 5 conversations): Remaining said 0 on the 4th and 8th.
    assert len(fake.requests) == 11 and len(waits) == 2
    assert all(0 < wait <= 31 for wait in waits)  # until X-RateLimit-Reset, an epoch 30 s ahead (sleep is faked)
    assert reader.client.stats.retries == 0


def test_missing_api_token_is_one_clear_error(actors: Actors) -> None:
    integration = Integration.objects.create(organization=actors.org, kind="front", outbound_credentials={})
    with pytest.raises(ImportAuthError, match="needs credentials: api_token"):
        FrontReader(integration)
