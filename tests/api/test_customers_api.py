"""Customers with identities, tickets and messages over the server API."""

from __future__ import annotations

from tests.api.helpers import assert_error
from tickets.models import Customer, TicketMessage


def test_customer_list_filters_and_paginates(actors, api):
    body = api.get("/api/customers/", {"email": "DANA@example.com"}).json()
    assert [c["name"] for c in body["results"]] == ["Dana Whitfield"]
    assert body["results"][0]["identities"] == [
        {"source": "zendesk", "external_id": "zd-1", "created_at": body["results"][0]["identities"][0]["created_at"]}
    ]
    assert api.get("/api/customers/", {"source": "zendesk", "external_id": "zd-2"}).json()["count"] == 1
    assert api.get("/api/customers/", {"q": "park"}).json()["results"][0]["name"] == "Lee Park"
    page = api.get("/api/customers/", {"page_size": 1}).json()
    assert page["count"] == 2 and len(page["results"]) == 1 and page["next"]
    assert_error(api.get("/api/customers/", {"page": 99}), 404, "not_found")
    assert_error(api.get("/api/customers/", {"source": "fax"}), 400, "validation_error")


def test_customer_create_is_idempotent_per_identity(actors, api):
    payload = {"source": "api", "external_id": "crm-77", "name": "Ana Lima", "email": "ana@example.com"}
    first = api.post("/api/customers/", payload, format="json")
    assert first.status_code == 201
    again = api.post("/api/customers/", payload, format="json")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert Customer.objects.filter(organization=actors.org, email="ana@example.com").count() == 1
    detail = api.get(f"/api/customers/{first.json()['id']}/").json()
    assert detail["identities"][0]["external_id"] == "crm-77"


def test_customer_create_rejects_bad_input_and_writes_nothing(actors, api):
    before = Customer.objects.count()
    error = assert_error(api.post("/api/customers/", {"external_id": "", "email": "nope"}, format="json"), 400)
    assert set(error["details"]) == {"external_id", "email"}
    assert_error(api.post("/api/customers/", {"external_id": "a\x00b"}, format="json"), 400)
    assert Customer.objects.count() == before


def test_tickets_create_list_filter_and_detail(actors, api):
    url = f"/api/customers/{actors.customer.pk}/tickets/"
    assert {t["subject"] for t in api.get(url).json()["results"]} == {
        "Card reader not syncing",
        "Charged twice for March",
    }
    assert [t["subject"] for t in api.get(url, {"status": "solved"}).json()["results"]] == ["Card reader not syncing"]
    created = api.post(url, {"subject": "Printer jams", "tags": ["hardware"], "external_id": "crm-t-1"}, format="json")
    assert created.status_code == 201
    assert created.json()["channel"] == "api" and created.json()["status"] == "new"
    assert_error(api.post(url, {"external_id": "crm-t-1"}, format="json"), 409, "conflict")
    other_url = f"/api/customers/{actors.other_customer.pk}/tickets/"
    assert_error(api.post(other_url, {"external_id": "crm-t-1"}, format="json"), 409)
    ticket_id = created.json()["id"]
    assert api.get(f"{url}{ticket_id}/").json()["subject"] == "Printer jams"
    assert_error(api.get(f"/api/customers/{actors.other_customer.pk}/tickets/{ticket_id}/"), 404)


def test_messages_are_stored_without_running_the_agent(actors, api):
    url = f"/api/customers/{actors.customer.pk}/messages/"
    assert len(api.get(url).json()["results"]) == 3
    payload = {"body": "Is the refund on its way?", "ticket_id": actors.open_ticket.pk, "external_id": "m-1"}
    created = api.post(url, payload, format="json")
    assert created.status_code == 201
    assert api.post(url, payload, format="json").status_code == 200  # idempotent on (ticket, external_id)
    assert TicketMessage.objects.filter(body="Is the refund on its way?").count() == 1
    listed = api.get(url, {"ticket": actors.open_ticket.pk, "author_role": "customer"}).json()["results"]
    assert [m["body"] for m in listed][-1] == "Is the refund on its way?"
    assert_error(api.post(url, {"body": "x", "ticket_id": 10**12}, format="json"), 404)
    assert_error(api.post(url, {"body": ""}, format="json"), 400, "validation_error")
    from support_agent.models import AgentRun

    assert not AgentRun.objects.exists()


def test_unknown_ids_and_methods_answer_in_the_error_shape(actors, api):
    assert_error(api.get("/api/customers/999999999/"), 404, "not_found")
    assert_error(api.delete(f"/api/customers/{actors.customer.pk}/"), 405, "method_not_allowed")
    response = api.post("/api/customers/", "{not json", content_type="application/json")
    assert_error(response, 400, "parse_error")
    assert_error(api.post("/api/customers/", "a=b", content_type="text/csv"), 415, "unsupported_media_type")
