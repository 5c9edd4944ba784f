"""Helpers shared by the API and widget tests."""

from __future__ import annotations

from typing import Any

from rest_framework.test import APIClient

from tickets.auth import user_hash_for
from tickets.models import Organization


def widget_session(client: APIClient, organization: Organization, user_id: str, name: str = "") -> str:
    """A widget token for user_id, obtained the way the widget does it (a hash computed server-side)."""
    response = client.post(
        f"/api/widget/{organization.widget_publishable_key}/session/",
        {"user_id": user_id, "user_hash": user_hash_for(organization=organization, user_id=user_id), "name": name},
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()["token"]


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is an error in the one shape, with that status (and code)."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]
