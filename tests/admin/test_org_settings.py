"""Organisation admins change their organisation's settings and manage API keys in the console; secrets stay masked."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from tickets.auth import user_hash_for, user_hash_valid
from tickets.models import ApiKey, StaffMembership
from tickets.staff import grant_staff_permissions


@pytest.fixture
def org_admin(actors) -> Client:
    user = get_user_model().objects.create_user(username="owner", password="pw-owner", is_staff=True)
    StaffMembership.objects.create(user=user, organization=actors.org)
    grant_staff_permissions(user, org_admin=True)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def staff_client(actors) -> Client:
    client = Client()
    client.force_login(actors.staff)
    return client


def _settings_form(actors, **changes) -> dict[str, str]:
    org = actors.org
    form = {
        "name": org.name,
        "step_limit": str(org.step_limit),
        "context_window_tokens": "",
        "widget_allowed_origins": ",".join(org.widget_allowed_origins),
    }
    if org.memory_edits_need_approval:
        form["memory_edits_need_approval"] = "on"
    form.update(changes)
    return form


def test_an_org_admin_changes_settings_and_support_staff_cannot(org_admin, staff_client, actors):
    url = f"/admin/tickets/organization/{actors.org.pk}/change/"
    page = org_admin.get(url).content.decode()
    assert actors.org.widget_secret not in page  # masked
    assert "••••••••" + actors.org.widget_secret[-4:] in page

    changed = _settings_form(
        actors, step_limit="6", memory_edits_need_approval="on", widget_allowed_origins="https://shop.example"
    )
    assert org_admin.post(url, changed).status_code == 302
    actors.org.refresh_from_db()
    assert actors.org.step_limit == 6 and actors.org.memory_edits_need_approval
    assert actors.org.widget_allowed_origins == ["https://shop.example"]

    assert staff_client.post(url, _settings_form(actors, step_limit="50")).status_code == 403
    actors.org.refresh_from_db()
    assert actors.org.step_limit == 6
    assert org_admin.get(f"/admin/tickets/organization/{actors.other_org.pk}/change/").status_code == 404


def test_rotating_the_widget_secret_shows_the_new_one_once(org_admin, actors):
    old_hash = user_hash_for(organization=actors.org, user_id="alice")
    rotate = f"/admin/tickets/organization/{actors.org.pk}/rotate-widget-secret/"
    page = org_admin.post(rotate, follow=True).content.decode()
    actors.org.refresh_from_db()
    assert f"<code>{actors.org.widget_secret}</code>" in page
    assert not user_hash_valid(organization=actors.org, user_id="alice", user_hash=old_hash)
    assert (
        actors.org.widget_secret
        not in org_admin.get(f"/admin/tickets/organization/{actors.org.pk}/change/").content.decode()
    )
    other = f"/admin/tickets/organization/{actors.other_org.pk}/rotate-widget-secret/"
    secret = actors.other_org.widget_secret
    assert org_admin.post(other).status_code == 404
    actors.other_org.refresh_from_db()
    assert actors.other_org.widget_secret == secret


def test_an_org_admin_creates_a_key_that_works_then_revokes_it(org_admin, staff_client, actors):
    created = org_admin.post("/admin/tickets/apikey/add/", {"name": "reporting job"}).content.decode()
    key = re.search(r'id="created-key-value">([^<]+)</pre>', created).group(1)
    row = ApiKey.objects.get(name="reporting job")
    assert row.organization == actors.org and key not in (row.key_hash, row.prefix)

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert api.get("/api/customers/").status_code == 200

    listing = org_admin.get("/admin/tickets/apikey/").content.decode()
    assert "reporting job" in listing and key not in listing
    detail = org_admin.get(f"/admin/tickets/apikey/{row.pk}/change/").content.decode()
    assert 'name="_save"' not in detail  # read-only: no Save

    assert staff_client.post("/admin/tickets/apikey/add/", {"name": "x"}).status_code == 403
    org_admin.post("/admin/tickets/apikey/", {"action": "revoke", "_selected_action": [row.pk]})
    row.refresh_from_db()
    assert row.revoked_at is not None
    assert api.get("/api/customers/").status_code == 401
