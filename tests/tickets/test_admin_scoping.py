"""Staff of one organisation never see another organisation's rows in the admin."""

from __future__ import annotations

from django.test import Client


def test_staff_see_only_their_organisations_customers(actors):
    client = Client()
    client.force_login(actors.other_staff)
    listing = client.get("/admin/tickets/customer/")
    assert listing.status_code == 200
    assert b"Sam Stranger" in listing.content
    assert b"Dana Whitfield" not in listing.content
    # Another organisation's customer by id: not found, not forbidden (nothing leaks).
    detail = client.get(f"/admin/tickets/customer/{actors.customer.pk}/change/")
    assert detail.status_code == 302 or detail.status_code == 404
    if detail.status_code == 302:
        assert "/admin/" in detail["Location"]
        follow = client.get(detail["Location"])
        assert b"Dana Whitfield" not in follow.content


def test_search_and_tickets_are_scoped(actors):
    client = Client()
    client.force_login(actors.other_staff)
    assert b"Dana" not in client.get("/admin/tickets/customer/?q=dana").content
    assert b"Card reader" not in client.get("/admin/tickets/ticket/").content
    client.force_login(actors.staff)
    assert b"Card reader" in client.get("/admin/tickets/ticket/").content


def test_login_page_answers(client):
    assert client.get("/admin/login/").status_code == 200
