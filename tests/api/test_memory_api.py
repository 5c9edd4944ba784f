"""Core memory blocks over the API: read with an ETag, update with optimistic concurrency (409 on conflict)."""

from __future__ import annotations

from memory.models import ChangeSource, MemoryBlock
from memory.services import blocks_ensure
from tests.api.helpers import assert_error


def test_blocks_read_and_update_with_if_match(actors, api):
    blocks_ensure(customer=actors.customer)
    listed = api.get(f"/api/customers/{actors.customer.pk}/memory/").json()
    assert {(b["label"], b["scope"]) for b in listed} >= {("persona", "organization"), ("preferences", "customer")}
    url = f"/api/customers/{actors.customer.pk}/memory/preferences/"
    read = api.get(url)
    assert read["ETag"] == f'"{read.json()["version"]}"'

    updated = api.patch(
        url, {"value": "Prefers email.", "reason": "asked by phone"}, format="json", HTTP_IF_MATCH=read["ETag"]
    )
    assert updated.status_code == 200 and updated.json()["value"] == "Prefers email."
    assert updated.json()["version"] == read.json()["version"] + 1

    stale = api.patch(url, {"value": "Prefers phone.", "reason": "stale"}, format="json", HTTP_IF_MATCH=read["ETag"])
    error = assert_error(stale, 409, "version_conflict")
    assert error["details"]["current_version"] == updated.json()["version"]
    assert MemoryBlock.objects.get(customer=actors.customer, label="preferences").value == "Prefers email."

    history = MemoryBlock.objects.get(customer=actors.customer, label="preferences").history.first()
    assert history.change_source == ChangeSource.API
    assert history.history_change_reason.startswith("asked by phone (API key ")


def test_version_in_body_and_bad_updates(actors, api):
    blocks_ensure(customer=actors.customer)
    url = f"/api/customers/{actors.customer.pk}/memory/customer/"
    version = api.get(url).json()["version"]
    body = {"value": "Owner of a bakery.", "version": version, "reason": "from the call"}
    assert api.patch(url, body, format="json").status_code == 200
    assert_error(api.patch(url, {**body, "value": "x"}, format="json"), 409)
    assert_error(api.patch(url, {"value": "x" * 2001, "reason": "r", "version": 2}, format="json"), 400)
    assert_error(api.patch(url, {"value": "x", "reason": "r"}, format="json", HTTP_IF_MATCH="yesterday"), 400)
    assert_error(api.get(f"/api/customers/{actors.customer.pk}/memory/persona/"), 404)  # an org block, not theirs
    assert_error(api.get(f"/api/customers/{actors.customer.pk}/memory/nope/"), 404)


def test_organization_blocks(actors, api):
    blocks_ensure(customer=actors.customer)
    assert {b["label"] for b in api.get("/api/memory/").json()} == {"persona", "policies"}
    read = api.get("/api/memory/policies/")
    updated = api.patch(
        "/api/memory/policies/",
        {"value": "Refunds within 30 days.", "reason": "policy review"},
        format="json",
        HTTP_IF_MATCH=read["ETag"],
    )
    assert updated.status_code == 200
    assert_error(api.get("/api/memory/preferences/"), 404)  # a customer block is not organisation-wide


def test_an_update_without_the_version_read_or_a_reason_is_refused(actors, api):
    blocks_ensure(customer=actors.customer)
    url = f"/api/customers/{actors.customer.pk}/memory/customer/"
    read = api.get(url)
    blind = assert_error(api.patch(url, {"value": "x", "reason": "r"}, format="json"), 428, "precondition_required")
    assert "If-Match" in blind["message"]
    no_reason = assert_error(api.patch(url, {"value": "x"}, format="json", HTTP_IF_MATCH=read["ETag"]), 400)
    assert "reason" in no_reason["details"]
    assert_error(api.patch(url, {"value": "x", "reason": ""}, format="json", HTTP_IF_MATCH=read["ETag"]), 400)
    assert_error(api.patch("/api/memory/persona/", {"value": "x", "reason": "r"}, format="json"), 428)
    block = MemoryBlock.objects.get(customer=actors.customer, label="customer")
    assert (block.value, block.version) == ("", read.json()["version"])
    # "If-Match: *" is an explicit overwrite of whatever is there.
    forced = api.patch(url, {"value": "Owner.", "reason": "r"}, format="json", HTTP_IF_MATCH="*")
    assert forced.status_code == 200 and forced.json()["value"] == "Owner."
