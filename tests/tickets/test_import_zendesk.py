"""Zendesk history import against a loopback fake that speaks the incremental export and comments API: paging,
429 with Retry-After, 500, a dropped connection, an expired token, a webhook during the import, a SIGKILL."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Actors
from tests.tickets import import_harness as harness
from tickets.helpdesk_fakes.zendesk import FakeZendesk
from tickets.helpdesks.zendesk import ZendeskReader

CREDENTIALS = {"email": "admin@example.com", "api_token": "secret-token"}


def _webhook(fake: FakeZendesk, n: int, j: int) -> tuple[dict[str, str], dict[str, Any]]:
    return {}, fake.webhook_comment_event(n, j)


CASE = harness.ImportCase(
    kind="zendesk",
    fake=FakeZendesk,
    integration_fields=lambda fake: {"outbound_base_url": fake.url, "outbound_credentials": CREDENTIALS},
    reader=lambda integration, size: ZendeskReader(integration, per_page=size),
    ticket_id=str,
    message_id=lambda n, j: "description" if j == 0 else str(n * 1000 + j),
    customer_id=lambda fake, n: str(fake.requester_id(n)),
    webhook=_webhook,
    list_path="incremental",
    message_path=lambda n: f"tickets/{n}/comments",
)


def test_paginated_import_stores_every_ticket_once_with_ids_roles_and_embeddings(actors: Actors) -> None:
    paged = replace(CASE, fake=lambda **options: FakeZendesk(comments_page_max=2, **options))
    fake = harness.check_paginated_import(paged, actors.org)
    assert len([r for r in fake.requests if "incremental" in r]) == 3  # 10 + 10 + 5 tickets
    assert len([r for r in fake.requests if "comments.json" in r]) == 25 * 3  # comments in pages of 2


def test_rate_limit_server_errors_and_dropped_connections_are_retried(actors: Actors) -> None:
    reader = harness.check_faults_are_retried(CASE, actors.org)
    assert reader.client.stats.retries == 4  # type: ignore[attr-defined]


def test_expired_token_fails_clearly_and_the_import_resumes_once_fixed(actors: Actors) -> None:
    harness.check_expired_token(CASE, actors.org, actors.other_org)


def test_webhooks_for_imported_tickets_during_the_import_create_no_duplicates(actors: Actors) -> None:
    harness.check_webhooks_during_import(CASE, actors.org)


@pytest.mark.django_db(transaction=True)
def test_import_killed_mid_way_and_restarted_ends_with_exactly_the_rows_of_an_uninterrupted_one(
    tmp_path: Path,
) -> None:
    harness.check_sigkill_resume(CASE, tmp_path)
