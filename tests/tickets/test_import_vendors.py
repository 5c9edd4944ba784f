"""The checks every helpdesk history reader must pass, run over the seven vendors (tests/tickets/import_cases.py):
faults retried, an expired token that fails clearly and resumes, webhooks during the import, an import stopped
dead mid-way and resumed; and, once, a real ``import_history`` process SIGKILLed and restarted. What only one
vendor does (its paging requests, OAuth, rate headers, limits) is in that vendor's test_import_<vendor>.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Actors
from tests.tickets import import_harness as harness
from tests.tickets.import_cases import CASES, ZENDESK
from tests.tickets.import_harness import ImportCase

vendors = pytest.mark.parametrize("case", CASES, ids=[case.kind for case in CASES])


@vendors
def test_rate_limit_server_errors_and_dropped_connections_are_retried(case: ImportCase, actors: Actors) -> None:
    reader = harness.check_faults_are_retried(case, actors.org)
    assert reader.client.stats.retries == 4  # type: ignore[attr-defined]


@vendors
def test_expired_token_fails_clearly_and_the_import_resumes_once_fixed(case: ImportCase, actors: Actors) -> None:
    harness.check_expired_token(case, actors.org, actors.other_org)


@vendors
def test_webhooks_for_imported_tickets_during_the_import_create_no_duplicates(case: ImportCase, actors: Actors) -> None:
    harness.check_webhooks_during_import(case, actors.org)


@vendors
def test_import_stopped_mid_way_and_resumed_ends_with_exactly_the_rows_of_an_uninterrupted_one(
    case: ImportCase, actors: Actors
) -> None:
    harness.check_interrupted_resume(case, actors.org, actors.other_org)


@pytest.mark.django_db(transaction=True)
def test_import_killed_mid_way_and_restarted_ends_with_exactly_the_rows_of_an_uninterrupted_one(
    tmp_path: Path,
) -> None:
    """A real ``import_history`` process, SIGKILLed: no cleanup, no final checkpoint, the database connection cut.
    Run for Zendesk only: checkpoints and resuming are the vendor-neutral engine's (tickets/imports.py), and each
    vendor's reader resuming from a checkpoint is test_import_stopped_mid_way_and_resumed's (in-process)."""
    harness.check_sigkill_resume(ZENDESK, tmp_path)
