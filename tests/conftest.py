"""Shared actors for every test: two organisations, a customer with history, another customer, staff users."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.utils import timezone

from support_agent.bootstrap import database_start
from tickets.models import Customer, Organization, StaffMembership, Ticket, TicketMessage
from tickets.services import TicketChanges, customer_resolve, message_ingest, ticket_upsert
from tickets.staff import grant_staff_permissions

# The pytest session is an entry point: with no DATABASE_URL, a throwaway PostgreSQL and data folder per test
# run, deleted at exit, so test runs never touch the `make run` cluster and never collide with each other.
# pytest-django has read the settings already; nothing has connected yet.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
_SESSION_DATA = Path(tempfile.mkdtemp(prefix="supportmem-test-"))
atexit.register(shutil.rmtree, _SESSION_DATA, ignore_errors=True)
settings.STATIC_ROOT = _SESSION_DATA / "static"
settings.STATIC_ROOT.mkdir()
# Passwords hashed with production's algorithm at a thousandth of its rounds (tests/password_hashing.py).
settings.PASSWORD_HASHERS = ["tests.password_hashing.FewRoundsPBKDF2PasswordHasher", *settings.PASSWORD_HASHERS]
database_start(_SESSION_DATA, cleanup_mode="delete")


@dataclass
class Actors:
    org: Organization
    other_org: Organization
    customer: Customer  # Dana, in org, with a solved and an open ticket
    other_customer: Customer  # Lee, in org, no history
    stranger: Customer  # a customer of other_org
    solved_ticket: Ticket
    open_ticket: Ticket
    staff: AbstractUser  # support staff of org
    reviewer: AbstractUser  # memory reviewer of org
    other_staff: AbstractUser  # support staff of other_org


def _staff_user(username: str, organization: Organization, *, reviewer: bool = False) -> AbstractUser:
    user = get_user_model().objects.create_user(username=username, password="pw-" + username, is_staff=True)
    StaffMembership.objects.create(user=user, organization=organization)
    grant_staff_permissions(user, reviewer=reviewer)
    return user  # type: ignore[return-value]


def build_actors() -> Actors:
    org = Organization.objects.create(name="Acme Support", slug="acme")
    other_org = Organization.objects.create(name="Globex Help", slug="globex")
    customer = customer_resolve(
        organization=org, source="zendesk", external_id="zd-1", name="Dana Whitfield", email="dana@example.com"
    )
    other_customer = customer_resolve(
        organization=org, source="zendesk", external_id="zd-2", name="Lee Park", email="lee@example.com"
    )
    stranger = customer_resolve(
        organization=other_org, source="zendesk", external_id="zd-1", name="Sam Stranger", email="sam@example.com"
    )
    start = timezone.now() - timedelta(days=60)
    solved = ticket_upsert(
        organization=org,
        customer=customer,
        integration_id=None,
        external_id="t-1",
        changes=TicketChanges(subject="Card reader not syncing", status="solved", tags=["pos"]),
        created_at=start,
        source_updated_at=start + timedelta(days=1),
    )
    message_ingest(
        customer=customer,
        ticket=solved,
        body="My card reader stopped syncing with the point of sale this morning.",
        author_role=TicketMessage.Role.CUSTOMER,
        created_at=start,
        announce=False,
    )
    message_ingest(
        customer=customer,
        ticket=solved,
        body="Please update the reader firmware to 4.2.3; that fixes the sync bug.",
        author_role=TicketMessage.Role.STAFF,
        created_at=start + timedelta(hours=2),
        announce=False,
    )
    opened = timezone.now() - timedelta(days=2)
    open_ticket = ticket_upsert(
        organization=org,
        customer=customer,
        integration_id=None,
        external_id="t-2",
        changes=TicketChanges(subject="Charged twice for March", status="open", tags=["billing"]),
        created_at=opened,
        source_updated_at=opened,
    )
    message_ingest(
        customer=customer,
        ticket=open_ticket,
        body="I was charged twice for the March invoice, 89 USD each time.",
        author_role=TicketMessage.Role.CUSTOMER,
        created_at=opened,
        announce=False,
    )
    return Actors(
        org=org,
        other_org=other_org,
        customer=customer,
        other_customer=other_customer,
        stranger=stranger,
        solved_ticket=solved,
        open_ticket=open_ticket,
        staff=_staff_user("staff", org),
        reviewer=_staff_user("reviewer", org, reviewer=True),
        other_staff=_staff_user("other-staff", other_org),
    )


@pytest.fixture
def actors(db: None) -> Actors:
    return build_actors()


@pytest.fixture(autouse=True)
def _fresh_log_context() -> Iterator[None]:
    """Services called directly (not through a request or a task) bind log ids; no test inherits another's."""
    from telemetry.logs import log_clear, log_exit

    token = log_clear()
    yield
    log_exit(token)


@pytest.fixture(autouse=True)
def _search_workers_closed() -> Iterator[None]:
    """Memory search reads on worker threads' own connections outside a transaction (transactional tests, live
    servers): they are closed after each test, so none outlives it (the test database is dropped at the end)."""
    yield
    from memory.selectors import search_workers_close

    search_workers_close()
