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
    # Another organisation's rows by id: not found, not forbidden, not a redirect (nothing leaks).
    for path in [
        f"/admin/tickets/customer/{actors.customer.pk}/change/",
        f"/admin/tickets/customer/{actors.customer.pk}/delete/",
        f"/admin/tickets/customer/{actors.customer.pk}/history/",
        f"/admin/tickets/ticket/{actors.open_ticket.pk}/change/",
        "/admin/tickets/customer/999999/change/",
        "/admin/tickets/customer/not-a-number/change/",
    ]:
        assert client.get(path).status_code == 404, path
    assert client.post(f"/admin/tickets/customer/{actors.customer.pk}/delete/", {"post": "yes"}).status_code == 404
    assert actors.customer.__class__.objects.filter(pk=actors.customer.pk).exists()


def test_search_and_tickets_are_scoped(actors):
    client = Client()
    client.force_login(actors.other_staff)
    assert b"Dana" not in client.get("/admin/tickets/customer/?q=dana").content
    assert b"Card reader" not in client.get("/admin/tickets/ticket/").content
    client.force_login(actors.staff)
    assert b"Card reader" in client.get("/admin/tickets/ticket/").content


def test_login_page_answers(client):
    assert client.get("/admin/login/").status_code == 200
