"""Server API keys: created by the command, stored hashed, shown once, revocable; missing or bad keys get 401."""

from __future__ import annotations

from io import StringIO

from django.core.management import call_command
from rest_framework.test import APIClient

from tests.api.helpers import assert_error
from tickets.models import ApiKey


def _create_key(slug: str) -> str:
    out = StringIO()
    call_command("create_api_key", "--org", slug, "--name", "helpdesk", stdout=out, stderr=StringIO())
    return out.getvalue().strip().splitlines()[-1]


def test_command_prints_a_working_key_and_stores_only_its_hash(actors):
    raw_key = _create_key("acme")
    row = ApiKey.objects.get(organization=actors.org)
    assert raw_key.startswith(row.prefix) and row.key_hash != raw_key
    assert not ApiKey.objects.filter(key_hash__contains=raw_key).exists()

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    response = client.get("/api/customers/")
    assert response.status_code == 200
    assert {c["name"] for c in response.json()["results"]} == {"Dana Whitfield", "Lee Park"}
    row.refresh_from_db()
    assert row.last_used_at is not None


def test_revoked_key_is_refused(actors):
    raw_key = _create_key("acme")
    call_command("create_api_key", "--org", "acme", "--revoke", raw_key[:12], stdout=StringIO())
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    assert_error(client.get("/api/customers/"), 401, "authentication_failed")


def test_missing_malformed_and_unknown_keys_get_401(actors):
    client = APIClient()
    response = client.get("/api/customers/")
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")
    for header in ["Bearer", "Bearer a b", "Bearer smk_not-a-real-key", "Basic dXNlcjpwdw=="]:
        client.credentials(HTTP_AUTHORIZATION=header)
        assert client.get("/api/customers/").status_code == 401, header


def test_widget_token_is_not_an_api_key(actors, api):
    from tests.api.helpers import widget_session

    token = widget_session(APIClient(), actors.org, "visitor-1")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert_error(client.get("/api/customers/"), 401)
