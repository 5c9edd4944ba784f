"""Zendesk history import against a loopback fake that speaks the incremental export and comments API: how it
pages tickets and comments. The checks every vendor shares (faults retried, an expired token, a webhook during the
import, an interrupted import resumed, and the one SIGKILL of a real process) are test_import_vendors.py's."""

from __future__ import annotations

from dataclasses import replace

from tests.conftest import Actors
from tests.tickets import import_harness as harness
from tests.tickets.import_cases import ZENDESK as CASE
from tickets.helpdesk_fakes.zendesk import FakeZendesk


def test_paginated_import_stores_every_ticket_once_with_ids_roles_and_embeddings(actors: Actors) -> None:
    paged = replace(CASE, fake=lambda **options: FakeZendesk(comments_page_max=2, **options))
    fake = harness.check_paginated_import(paged, actors.org)
    assert len([r for r in fake.requests if "incremental" in r]) == 3  # 10 + 10 + 5 tickets
    assert len([r for r in fake.requests if "comments.json" in r]) == 25 * 3  # comments in pages of 2
