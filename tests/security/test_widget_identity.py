"""Finding 6 of the attack audit: the widget's user_id was trimmed before its HMAC was checked, so "alice "
(or "\\talice\\n") sent with alice's user_hash signed in as alice."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.conftest import Actors
from tickets.auth import user_hash_for
from tickets.models import CustomerIdentity

pytestmark = pytest.mark.django_db


def test_a_padded_user_id_with_another_users_hash_is_refused(actors: Actors) -> None:
    org = actors.org
    CustomerIdentity.objects.create(organization=org, customer=actors.customer, source="widget", external_id="alice")
    url = f"/api/widget/{org.widget_publishable_key}/session/"
    alice_hash = user_hash_for(organization=org, user_id="alice")
    client = APIClient()
    for padded in ("alice ", " alice", "alice\n", "\talice"):
        response = client.post(url, {"user_id": padded, "user_hash": alice_hash}, format="json")
        assert response.status_code == 401, (padded, response.content)
        assert response.json()["error"]["code"] == "invalid_user_hash"
    # Alice herself still signs in; and "alice " is a different user, with a hash of its own.
    assert client.post(url, {"user_id": "alice", "user_hash": alice_hash}, format="json").json()["customer"]["id"] == (
        actors.customer.pk
    )
    own = {"user_id": "alice ", "user_hash": user_hash_for(organization=org, user_id="alice ")}
    other = client.post(url, own, format="json")
    assert other.status_code == 201 and other.json()["customer"]["id"] != actors.customer.pk
