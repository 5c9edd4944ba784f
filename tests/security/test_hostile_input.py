"""Findings 3 and 4 of the attack audit, and the 415 the README promises: bytes a client can send that used to
reach PostgreSQL or Python's recursion limit and came back as a 500 (an HTML page, for the widget's OPTIONS).

Every request goes to gunicorn as `make run` starts it. API, widget and webhook routes answer a 4xx in the
JSON error shape; the admin answers a plain 400.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.security.live_stack import admin_login, live_url, raw_request
from tests.tickets.standard_sender import WHSEC, signed_headers
from tickets.auth import api_key_create, user_hash_for
from tickets.models import Integration, Organization

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
__all__ = ["live_url"]  # the fixture, imported for pytest

NESTED = "[" * 2048 + "]" * 2048
NESTED_OBJECT = '{"a":' * 1000 + "1" + "}" * 1000


def _assert_json_error(response: httpx.Response, *statuses: int) -> None:
    assert response.status_code in statuses, (response.request.method, response.request.url, response.text[:300])
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body


def _widget_token(base: str, org: Organization) -> str:
    """A widget token from the live server (it signs with its own SECRET_KEY), as the widget obtains one."""
    user_hash = user_hash_for(organization=org, user_id="visitor-1")
    response = httpx.post(
        f"{base}/api/widget/{org.widget_publishable_key}/session/",
        json={"user_id": "visitor-1", "user_hash": user_hash},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def test_nested_json_is_a_400_on_every_json_endpoint(live_url, actors):
    org = actors.org
    key = api_key_create(organization=org, name="attacker")[1]
    api = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    widget = {
        "Authorization": f"Bearer {_widget_token(live_url, org)}",
        "Content-Type": "application/json",
    }
    anonymous = {"Content-Type": "application/json"}
    pk, cid = org.widget_publishable_key, actors.customer.pk
    targets = [
        ("POST", f"/api/widget/{pk}/session/", anonymous),
        ("POST", f"/api/widget/{pk}/messages/", widget),
        ("POST", "/api/customers/", api),
        ("PATCH", f"/api/customers/{cid}/", api),
        ("POST", f"/api/customers/{cid}/tickets/", api),
        ("POST", f"/api/customers/{cid}/messages/", api),
        ("POST", f"/api/customers/{cid}/turns/", api),
        ("POST", f"/api/customers/{cid}/passages/", api),
        ("POST", f"/api/customers/{cid}/passages/search/", api),
        ("PATCH", f"/api/customers/{cid}/memory/customer/", api),
        ("PATCH", "/api/memory/persona/", api),
    ]
    with httpx.Client(base_url=live_url, timeout=60) as client:
        for method, path, headers in targets:
            for body in (NESTED, NESTED_OBJECT):
                _assert_json_error(client.request(method, path, content=body, headers=headers), 400, 404, 405)
        integration = Integration.objects.create(organization=org, kind="standard", signing_secret=WHSEC)
        for n, body in enumerate((NESTED, NESTED_OBJECT)):
            raw = body.encode()
            response = client.post(
                f"/webhooks/standard/{integration.webhook_token}/", content=raw, headers=signed_headers(raw, f"msg_{n}")
            )
            _assert_json_error(response, 400)


def test_nul_and_lone_surrogates_in_json_bodies_are_a_400(live_url, actors):
    org = actors.org
    key = api_key_create(organization=org, name="attacker")[1]
    api = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    widget = {
        "Authorization": f"Bearer {_widget_token(live_url, org)}",
        "Content-Type": "application/json",
    }
    pk = org.widget_publishable_key
    with httpx.Client(base_url=live_url, timeout=60) as client:
        for bad in ("a\\u0000b", "\\ud800", "x\\udfff"):
            session = f'{{"user_id": "{bad}", "user_hash": "{"0" * 64}"}}'
            _assert_json_error(
                client.post(
                    f"/api/widget/{pk}/session/", content=session, headers={"Content-Type": "application/json"}
                ),
                400,
            )
            _assert_json_error(
                client.post(f"/api/widget/{pk}/messages/", content=f'{{"body": "{bad}"}}', headers=widget), 400
            )
            _assert_json_error(
                client.post("/api/customers/", content=f'{{"name": "{bad}", "external_id": "e"}}', headers=api), 400
            )
            key_nul = f'{{"{bad}": 1}}'
            _assert_json_error(client.post("/api/customers/", content=key_nul, headers=api), 400)
            text = f'{{"message": "{bad}"}}'
            _assert_json_error(
                client.post(f"/api/customers/{actors.customer.pk}/turns/", content=text, headers=api), 400
            )
        integration = Integration.objects.create(organization=org, kind="standard", signing_secret=WHSEC)
        event = {
            "type": "message.created",
            "data": {"id": "t", "requester": {"id": "r\u0000"}, "message": {"body": "x"}},
        }
        raw = json.dumps(event).encode()
        response = client.post(
            f"/webhooks/standard/{integration.webhook_token}/", content=raw, headers=signed_headers(raw, "msg_nul")
        )
        _assert_json_error(response, 400)


def test_nul_in_paths_is_a_json_400_for_get_post_and_options(live_url, actors):
    key = api_key_create(organization=actors.org, name="attacker")[1]
    origin = {"Origin": "https://shop.example"}
    with httpx.Client(base_url=live_url, timeout=60) as client:
        for path in ("/api/widget/x%00/session/", "/api/widget/x%00/messages/", "/api/widget/%00/runs/1/"):
            for method in ("GET", "POST", "OPTIONS"):
                _assert_json_error(client.request(method, path, headers=origin), 400)
        for path in (f"/api/customers/{actors.customer.pk}/memory/a%00b/", "/api/memory/%00/", "/api/x%00"):
            _assert_json_error(client.get(path, headers={"Authorization": f"Bearer {key}"}), 400)
        _assert_json_error(client.post("/webhooks/standard/tok%00en/", content=b"{}"), 400)


def test_nul_in_query_strings_and_headers_is_a_400(live_url, actors):
    key = api_key_create(organization=actors.org, name="attacker")[1]
    auth = {"Authorization": f"Bearer {key}"}
    cid = actors.customer.pk
    with httpx.Client(base_url=live_url, timeout=60) as client:
        for path in (
            "/api/customers/?q=%00",
            "/api/customers/?email=a%00",
            f"/api/customers/{cid}/passages/?tag=%00",
            f"/api/customers/{cid}/passages/search/?q=x%00",
            f"/api/customers/{cid}/tickets/?status=%00",
            f"/api/customers/{cid}/messages/?q=%00",
            f"/api/widget/{actors.org.widget_publishable_key}/messages/?limit=%00",
        ):
            _assert_json_error(client.get(path, headers=auth), 400)
    host = live_url.removeprefix("http://").encode()
    for header in (b"Authorization: Bearer sk_\x00x", b"Origin: https://a\x00.example", b"X-Anything: \x00"):
        head = b"GET /api/customers/ HTTP/1.1\r\nHost: " + host + b"\r\n" + header + b"\r\nConnection: close\r\n"
        assert 400 <= raw_request(live_url, head) < 500, header


def test_nul_in_admin_search_is_a_plain_400(live_url, actors):
    staff = admin_login(live_url, actors.staff.username, "pw-" + actors.staff.username)
    try:
        assert staff.get("/admin/tickets/customer/?q=dana").status_code == 200
        for path in (
            "/admin/tickets/customer/?q=%00",
            "/admin/memory/archivalpassage/?q=%00",
            "/admin/tickets/ticketmessage/?q=a%00b",
            "/admin/memory/memoryblock/?customer__id__exact=%00",
            "/admin/tickets/customer/%00/change/",
        ):
            response = staff.get(path)
            assert response.status_code == 400, (path, response.status_code, response.text[:300])
            assert "Traceback" not in response.text
    finally:
        staff.close()


def test_form_and_multipart_bodies_get_415_where_json_is_expected(live_url, actors):
    key = api_key_create(organization=actors.org, name="attacker")[1]
    pk = actors.org.widget_publishable_key
    good_hash = user_hash_for(organization=actors.org, user_id="alice")
    with httpx.Client(base_url=live_url, timeout=60) as client:
        form = {"user_id": "alice", "user_hash": good_hash}
        _assert_json_error(client.post(f"/api/widget/{pk}/session/", data=form), 415)
        _assert_json_error(client.post(f"/api/widget/{pk}/session/", files={"user_id": (None, "alice")}), 415)
        auth = {"Authorization": f"Bearer {key}"}
        _assert_json_error(client.post("/api/customers/", data={"name": "x", "external_id": "y"}, headers=auth), 415)
        _assert_json_error(client.post("/api/customers/", files={"f": ("a.txt", b"x")}, headers=auth), 415)
