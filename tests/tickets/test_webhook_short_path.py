"""The webhook short path (tickets.webhook_short_path): a valid delivery is stored without Django's handler, with
the same answer and the same stored event; everything else is answered by Django, from the same bytes."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterable
from typing import Any

import httpx
import pytest
from django.core.wsgi import get_wsgi_application

from tests.tickets.standard_sender import WHSEC, message_event, signed_headers
from tickets import webhook_short_path
from tickets.models import Integration, WebhookEvent
from tickets.webhook_short_path import WebhookShortPath

pytestmark = pytest.mark.django_db(transaction=True)  # both paths send request_started, as a server does


class _Counted:
    """Django's application, counting the requests it answered."""

    def __init__(self) -> None:
        self.app = get_wsgi_application()
        self.calls = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.calls += 1
        return self.app(environ, start_response)


def _clients() -> tuple[httpx.Client, httpx.Client, _Counted]:
    """(short path over Django, Django alone, the counter of what reached Django through the short path). Django's
    middlewares read the settings when the application is built: build it after changing them."""
    inner = _Counted()
    short = httpx.Client(transport=httpx.WSGITransport(app=WebhookShortPath(inner)), base_url="http://testserver")
    django = httpx.Client(transport=httpx.WSGITransport(app=get_wsgi_application()), base_url="http://testserver")
    return short, django, inner


@pytest.fixture
def paths(settings: Any) -> tuple[httpx.Client, httpx.Client, _Counted]:
    settings.SUPPORTMEM_LOCAL_WORKER = True  # make run's way: the request stores, a worker processes
    return _clients()


@pytest.fixture
def integration(actors: Any) -> Integration:
    return Integration.objects.create(organization=actors.org, kind="standard", signing_secret=WHSEC)


def _url(integration: Integration) -> str:
    return f"/webhooks/standard/{integration.webhook_token}/"


def _comparable(response: httpx.Response) -> tuple[int, dict[str, str], Any]:
    headers = {name.lower(): value for name, value in response.headers.items() if name.lower() != "x-request-id"}
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict):
        body.pop("event_id", None)
    return response.status_code, headers, body


def test_a_valid_delivery_is_stored_by_the_short_path_as_django_stores_it(paths, integration):
    short, django, inner = paths
    text = 'Quotes " and \\ backslashes, accents éà, an emoji 🎧, a tab\tand a newline\n.'
    body, msg_id = message_event(1, text=text)
    fast = short.post(_url(integration), content=body, headers=signed_headers(body, msg_id))
    assert inner.calls == 0
    assert fast.status_code == 202
    other_body, other_id = message_event(2)
    slow = django.post(_url(integration), content=other_body, headers=signed_headers(other_body, other_id))
    assert _comparable(fast) == _comparable(slow)
    assert fast.json()["status"] == "accepted"

    stored = WebhookEvent.objects.get(pk=fast.json()["event_id"])
    reference = WebhookEvent.objects.get(pk=slow.json()["event_id"])
    assert stored.raw_body == body.decode()  # bound as a parameter, byte for byte
    assert stored.delivery_key == msg_id
    assert stored.headers.keys() == reference.headers.keys()
    assert stored.headers["webhook-id"] == msg_id
    assert (stored.status, stored.event_type, stored.organization_id) == (
        reference.status,
        reference.event_type,
        reference.organization_id,
    )
    assert stored.next_attempt_at is not None and stored.attempts == 0

    again = short.post(_url(integration), content=body, headers=signed_headers(body, msg_id))
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "event_id": stored.pk}
    assert inner.calls == 0


def test_the_request_id_of_a_proxy_is_answered_and_a_bad_one_replaced(paths, integration):
    short, _django, _inner = paths
    body, msg_id = message_event(3)
    headers = {**signed_headers(body, msg_id), "X-Request-ID": "lb-7"}
    answer = short.post(_url(integration), content=body, headers=headers)
    assert answer.headers["X-Request-ID"] == "lb-7"
    body, msg_id = message_event(4)
    headers = {**signed_headers(body, msg_id), "X-Request-ID": "a b"}
    answer = short.post(_url(integration), content=body, headers=headers)
    assert answer.headers["X-Request-ID"] != "a b" and len(answer.headers["X-Request-ID"]) == 32


def _refusals(integration: Integration) -> list[tuple[str, dict[str, Any]]]:
    body, msg_id = message_event(5)
    good = signed_headers(body, msg_id)
    url = _url(integration)
    deep = json.dumps({"type": "message.created", "data": json.loads("[" * 300 + "]" * 300)}).encode()
    return [
        ("bad signature", {"url": url, "content": body, "headers": {**good, "webhook-signature": "v1,AAAA"}}),
        ("unknown token", {"url": "/webhooks/standard/not-a-token/", "content": body, "headers": good}),
        ("unknown kind", {"url": f"/webhooks/nosuch/{integration.webhook_token}/", "content": body, "headers": good}),
        ("host not allowed", {"url": url, "content": body, "headers": {**good, "Host": "evil.example"}}),
        ("NUL in a header", {"url": url, "content": body, "headers": {**good, "X-Note": "a\x00b"}}),
        ("not JSON", {"url": url, "content": b"{not json", "headers": signed_headers(b"{not json", "msg_nj")}),
        ("not UTF-8", {"url": url, "content": b"\xff\xfe", "headers": signed_headers(b"\xff\xfe", "msg_nu")}),
        ("nested too deep", {"url": url, "content": deep, "headers": signed_headers(deep, "msg_deep")}),
        ("no trailing slash", {"url": url.rstrip("/"), "content": body, "headers": good}),
    ]


@pytest.mark.parametrize("case", [name for name, _ in _refusals(Integration(webhook_token="x"))])
def test_whatever_the_short_path_does_not_store_is_answered_by_django(paths, integration, case):
    short, django, inner = paths
    request = dict(_refusals(integration))[case]
    ours = short.post(**request)
    assert inner.calls == 1, "the short path answered it itself"
    theirs = django.post(**request)
    assert _comparable(ours) == _comparable(theirs)
    assert ours.status_code >= 300
    assert not WebhookEvent.objects.filter(integration=integration).exists()


def test_a_delivery_with_a_query_string_is_stored_by_django(paths, integration):
    short, _django, inner = paths
    body, msg_id = message_event(10)
    answer = short.post(_url(integration) + "?source=zap", content=body, headers=signed_headers(body, msg_id))
    assert (answer.status_code, inner.calls) == (202, 1)
    assert WebhookEvent.objects.filter(integration=integration, delivery_key=msg_id).exists()


def test_other_methods_and_urls_go_to_django(paths, integration):
    short, _django, inner = paths
    assert short.get(_url(integration)).status_code == 405
    assert short.get("/healthz").status_code in (200, 503)
    assert inner.calls == 2


def test_a_body_over_the_limit_is_refused_by_django(paths, integration):
    short, _django, inner = paths
    big = b'{"type": "message.created", "pad": "' + b"x" * (1024 * 1024) + b'"}'
    answer = short.post(_url(integration), content=big, headers=signed_headers(big, "msg_big"))
    assert (answer.status_code, answer.json()["error"]["code"]) == (413, "payload_too_large")
    assert inner.calls == 1


def test_an_error_while_storing_is_answered_by_django_from_the_same_bytes(paths, integration, monkeypatch):
    short, _django, inner = paths

    def broken(**kwargs: Any) -> Any:
        raise RuntimeError("the short path failed")

    monkeypatch.setattr(webhook_short_path, "webhook_intake", broken)
    body, msg_id = message_event(6)
    answer = short.post(_url(integration), content=body, headers=signed_headers(body, msg_id))
    assert inner.calls == 1
    assert answer.status_code == 202  # Django's view stored it
    assert WebhookEvent.objects.filter(integration=integration, delivery_key=msg_id).count() == 1


def test_security_headers_match_django_behind_a_tls_proxy(integration, settings):
    settings.SUPPORTMEM_LOCAL_WORKER = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_SSL_REDIRECT = True
    short, django, inner = _clients()
    body, msg_id = message_event(7)
    fast = short.post(
        _url(integration), content=body, headers={**signed_headers(body, msg_id), "X-Forwarded-Proto": "https"}
    )
    assert inner.calls == 0
    body, msg_id = message_event(8)
    slow = django.post(
        _url(integration), content=body, headers={**signed_headers(body, msg_id), "X-Forwarded-Proto": "https"}
    )
    assert _comparable(fast) == _comparable(slow)
    assert fast.headers["Strict-Transport-Security"] == "max-age=3600; includeSubDomains"
    # Plain HTTP with the redirect on: Django's redirect, not a stored event.
    body, msg_id = message_event(9)
    redirected = short.post(_url(integration), content=body, headers=signed_headers(body, msg_id))
    assert redirected.status_code == 301 and inner.calls == 1


def test_the_served_application_takes_the_short_path():
    from support_agent import wsgi

    assert isinstance(wsgi.application, WebhookShortPath)


def test_heap_freeze_moves_what_is_loaded_out_of_the_collectors_sight():
    from support_agent.warmup import heap_freeze

    try:
        frozen = heap_freeze()
        assert frozen > 10_000  # Django and the apps alone are far more objects than this
        assert gc.get_freeze_count() > 10_000  # (other threads may free a few in between: not an equality)
    finally:
        gc.unfreeze()
