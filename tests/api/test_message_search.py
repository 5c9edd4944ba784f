"""Message search over the API: the organisation's messages from every channel, staff-side (internal notes
included), never another organisation's."""

from __future__ import annotations

from tests.api.helpers import assert_error
from tickets.models import TicketMessage
from tickets.services import message_ingest


def test_search_finds_the_organisations_messages_and_internal_notes(actors, api):
    note, _ = message_ingest(
        customer=actors.customer,
        ticket=actors.open_ticket,
        body="Internal: the double charge came from the March invoice retry.",
        author_role=TicketMessage.Role.STAFF,
        is_public=False,
        announce=False,
    )
    message_ingest(customer=actors.stranger, body="I was charged twice too", author_role="customer", announce=False)
    found = api.get("/api/messages/search/", {"q": "charged twice"}).json()
    assert found["total"] >= 1 and not found["has_next"]
    hits = {hit["id"]: hit for hit in found["results"]}
    assert all(hit["customer_id"] in {actors.customer.pk, actors.other_customer.pk} for hit in hits.values())
    assert any("89 USD" in hit["body"] for hit in hits.values())
    notes = api.get("/api/messages/search/", {"q": "invoice retry"}).json()["results"]
    assert [(hit["id"], hit["is_public"]) for hit in notes] == [(note.pk, False)]


def test_search_of_one_customer_and_bad_input(actors, api):
    url = "/api/messages/search/"
    one = api.get(url, {"q": "card reader firmware", "customer_id": actors.customer.pk}).json()
    assert one["results"] and all(hit["customer_id"] == actors.customer.pk for hit in one["results"])
    assert api.get(url, {"q": "card reader", "customer_id": actors.other_customer.pk}).json()["results"] == []
    assert_error(api.get(url, {"q": "charged", "customer_id": actors.stranger.pk}), 404)
    assert_error(api.get(url, {"page": 0}), 400)
    assert_error(api.get(url, {"customer_id": "abc"}), 400)
    newest = api.get(url, {"page_size": 1}).json()
    assert newest["page_size"] == 1 and newest["has_next"] and len(newest["results"]) == 1
