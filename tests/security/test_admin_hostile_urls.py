"""No URL of the staff console answers 500, whatever a client puts in its path: every admin route (the stock
change/delete/history views and our own: merge, undo, import, review actions) is requested with ids that are not
numbers, out of PostgreSQL's integer range or non-ASCII digits, as a staff member and a superuser, by GET and by
POST. (Another organisation's ids are tests/admin/test_admin_scoping.py's.)"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from tests.conftest import Actors

HOSTILE_IDS = ["abc", "99999999999999999999", "%C2%B2"]  # not a number, out of range, a non-ASCII digit


def _admin_routes() -> list[str]:
    """Every admin route with a path parameter, as a pattern with one placeholder per parameter."""
    routes: list[str] = []

    def walk(patterns: list[URLPattern | URLResolver], prefix: str) -> None:
        for pattern in patterns:
            text = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, text)
            elif "<" in text or "(?P<" in text:
                routes.append(text)

    walk(get_resolver().url_patterns, "/")
    return sorted({r for r in routes if r.startswith("/admin/")})


def _fill(route: str, value: str) -> str:
    path = re.sub(r"<(?:\w+:)?\w+>", value, route)
    path = re.sub(r"\(\?P<\w+>[^)]*\)", value, path)
    return path.replace("^", "").replace("$", "").replace("\\", "")


def _logged_in(actors: Actors) -> list[Client]:
    """A support staff member and a superuser, logged in."""
    root = get_user_model().objects.create_superuser(username="root", password="pw-root", email="r@example.com")
    result = []
    for user in (actors.staff, root):
        client = Client(raise_request_exception=False)
        client.force_login(user)  # type: ignore[arg-type]
        result.append(client)
    return result


@pytest.fixture
def clients(actors: Actors) -> list[Client]:
    return _logged_in(actors)


def test_the_sweep_covers_the_custom_admin_routes() -> None:
    routes = _admin_routes()
    assert len(routes) > 40
    assert any("import" in route for route in routes)
    assert any("merge" in route for route in routes)


@pytest.mark.django_db(transaction=True)
def test_no_admin_route_answers_500_for_hostile_ids(
    actors: Actors, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Over a thousand requests, kept cheap without changing what a route does with the id: the session rides in a
    # signed cookie instead of a row read on every request, and the 404s and 403s are not logged with their
    # tracebacks (a 500 is logged at ERROR still, and the status is what is checked).
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    caplog.set_level(logging.ERROR, logger="django.request")
    clients = _logged_in(actors)
    assert admin.site is not None
    assert all(client.get("/admin/").status_code == 200 for client in clients)  # logged in, not sent to log in
    failures = []
    for route in _admin_routes():
        for value in HOSTILE_IDS:
            path = _fill(route, value)
            for client in clients:
                for method in ("get", "post"):
                    response = getattr(client, method)(path)
                    if response.status_code >= 500:
                        failures.append(f"{method.upper()} {path} -> {response.status_code}")
    assert not failures, "\n".join(failures)


@pytest.mark.django_db(transaction=True)
def test_import_start_refuses_bad_limits_and_dates_with_a_message(actors: Actors, clients: list[Client]) -> None:
    from tickets.models import ImportJob, Integration

    integration = Integration.objects.create(
        organization=actors.org,
        kind="zendesk",
        outbound_base_url="http://127.0.0.1:9",
        outbound_credentials={"email": "a@example.com", "api_token": "t"},
    )
    staff = clients[0]
    for data in ({"limit": "99999999999999999999"}, {"limit": "²"}, {"limit": "-3"}, {"since": "2024-13-45"}):
        response = staff.post(f"/admin/tickets/integration/{integration.pk}/import/", data)
        assert response.status_code == 302, (data, response.status_code)
    assert not ImportJob.objects.exists()
