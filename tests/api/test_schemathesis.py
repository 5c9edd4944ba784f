"""schemathesis against our own OpenAPI schema: for every operation, generated requests (valid and invalid)
never get a 5xx, and every answer conforms to the schema (status code, content type, body).

Requests carry a real API key (or, on widget operations, a real widget token), and ids in paths point at
real rows of the caller's organisation most of the time, so the fuzzing reaches past the 404s.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from memory.services import Provenance, blocks_ensure, passage_insert
from support_agent.models import AgentRun
from tickets.auth import api_key_create, widget_token_issue
from tickets.models import Organization
from tickets.services import TicketChanges, customer_resolve, message_ingest, ticket_upsert

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


# Loaded at collection: pytest-django has configured Django by then, and the schema view reads no table.
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())


@pytest.fixture
def wsgi_keeps_the_test_connection() -> Iterator[None]:
    """Requests go through the real WSGI handler, which closes the database connection at each request's
    start and end; inside a test's transaction that would close it mid-test. Django's test client
    disconnects the same handlers."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_targets(db: None, settings: Any, wsgi_keeps_the_test_connection: None) -> dict[str, Any]:
    """A lean world (no staff users: hashing their passwords for each of ~30 tests adds minutes)."""
    # Throttles would turn the flood of generated requests into 429s: turn them off for this test.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {}}
    org = Organization.objects.create(name="Acme Support", slug="acme")
    customer = customer_resolve(organization=org, source="zendesk", external_id="zd-1", name="Dana", email="d@x.io")
    ticket = ticket_upsert(
        organization=org, customer=customer, integration_id=None, external_id="t-1", changes=TicketChanges("Login")
    )
    message_ingest(customer=customer, ticket=ticket, body="I cannot log in.", author_role="customer", announce=False)
    blocks_ensure(customer=customer)
    passage, _ = passage_insert(
        organization=org, customer=customer, text="Uses firmware 4.2.3.", provenance=Provenance()
    )
    run = AgentRun.objects.create(organization=org, customer=customer, trigger="api", status="completed")
    return {
        "api_key": api_key_create(organization=org)[1],
        "widget_token": widget_token_issue(customer=customer),
        "ids": {
            "customer_id": customer.pk,
            "ticket_id": ticket.pk,
            "passage_id": passage.pk,
            "run_id": run.pk,
            "publishable_key": org.widget_publishable_key,
        },
    }


def _aim(case: Any, ids: dict[str, Any]) -> None:
    """Point most generated ids at real rows (schemathesis' own values are kept for a random third)."""
    params = case.path_parameters or {}
    if params and hash(repr(sorted(params.items()))) % 3:
        for name in params:
            if name in ids:
                params[name] = ids[name]


FUZZ_SETTINGS = settings(
    max_examples=10,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
# Sending a widget message runs the agent in a thread of its own, with its own database connection: that one
# operation needs committed data (transaction=True); every other operation runs in a rolled-back transaction.
STREAMING_PATH, STREAMING_METHOD = "/api/widget/{publishable_key}/messages/", "POST"


def _call(case: Any, targets: dict[str, Any]) -> None:
    _aim(case, targets["ids"])
    widget = case.path.startswith("/api/widget/")
    token = targets["widget_token"] if widget else targets["api_key"]
    headers = {"Authorization": f"Bearer {token}"} if not case.path.endswith("/session/") else {}
    case.call_and_validate(headers=headers, checks=CHECKS)


@pytest.mark.django_db
@schema.exclude(path=STREAMING_PATH, method=STREAMING_METHOD).parametrize()
@FUZZ_SETTINGS
def test_api_conforms_to_its_schema(case: Any, fuzz_targets: dict[str, Any]) -> None:
    _call(case, fuzz_targets)


@pytest.mark.django_db(transaction=True)
@schema.include(path=STREAMING_PATH, method=STREAMING_METHOD).parametrize()
@FUZZ_SETTINGS
def test_streamed_widget_messages_conform_to_the_schema(case: Any, fuzz_targets: dict[str, Any]) -> None:
    _call(case, fuzz_targets)
