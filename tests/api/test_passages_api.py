"""Archival passages over the API: insert (deduplicated), search, supersede, delete."""

from __future__ import annotations

from memory.models import ArchivalPassage
from tests.api.helpers import assert_error


def test_insert_search_supersede_delete(actors, api):
    url = f"/api/customers/{actors.customer.pk}/passages/"
    created = api.post(url, {"text": "Dana's reader runs firmware 4.2.3.", "tags": ["POS"]}, format="json")
    assert created.status_code == 201 and created.json()["tags"] == ["pos"]
    again = api.post(url, {"text": "dana's reader runs  firmware 4.2.3."}, format="json")
    assert again.status_code == 200 and again.json()["id"] == created.json()["id"]

    found = api.get(f"{url}search/", {"q": "firmware"}).json()
    assert found["total"] == 1 and found["results"][0]["id"] == created.json()["id"]
    assert api.get(f"{url}search/", {"q": "firmware", "tags": ["billing"]}).json()["total"] == 0

    passage_id = created.json()["id"]
    successor = api.post(f"{url}{passage_id}/supersede/", {"text": "Dana's reader runs firmware 4.3.0."}, format="json")
    assert successor.status_code == 201 and successor.json()["tags"] == ["pos"]
    old = api.get(f"{url}{passage_id}/").json()
    assert old["invalidated_at"] and old["superseded_by_id"] == successor.json()["id"]
    assert [p["text"] for p in api.get(f"{url}search/", {"q": "firmware"}).json()["results"]] == [
        "Dana's reader runs firmware 4.3.0."
    ]
    assert api.get(url, {"include_invalidated": "true"}).json()["count"] == 2
    assert_error(api.post(f"{url}{passage_id}/supersede/", {"text": "again"}, format="json"), 400)

    assert api.delete(f"{url}{successor.json()['id']}/").status_code == 204
    assert not ArchivalPassage.objects.filter(pk=successor.json()["id"]).exists()


def test_passages_are_scoped_to_their_customer(actors, api):
    url = f"/api/customers/{actors.customer.pk}/passages/"
    passage_id = api.post(url, {"text": "Prefers the Lisbon office."}, format="json").json()["id"]
    other = f"/api/customers/{actors.other_customer.pk}/passages/"
    assert_error(api.get(f"{other}{passage_id}/"), 404)
    assert_error(api.delete(f"{other}{passage_id}/"), 404)
    assert api.get(f"{other}search/", {"q": "Lisbon"}).json()["total"] == 0
    assert_error(api.post(url, {"text": "   "}, format="json"), 400)
    assert_error(api.get(f"{url}search/", {"page": 0}), 400)
