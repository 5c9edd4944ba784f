"""The widget API: identity verification, signed tokens, streamed replies, history, CORS and throttling."""

from __future__ import annotations

import json

import pytest
from django.core import signing
from django.core.cache import cache
from django.test import override_settings
from rest_framework.test import APIClient

from support_agent.models import AgentRun
from tests.api.helpers import assert_error, widget_session
from tickets.auth import user_hash_for
from tickets.models import CustomerIdentity


def _client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def _events(response) -> list[tuple[str, dict]]:
    text = b"".join(response.streaming_content).decode()
    events = []
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if not line.startswith(":")]
        if not lines:
            continue
        kind = next(line[6:].strip() for line in lines if line.startswith("event:"))
        data = json.loads("".join(line[5:].strip() for line in lines if line.startswith("data:")))
        events.append((kind, data))
    return events


def test_session_verifies_the_user_hash(actors):
    key = actors.org.widget_publishable_key
    client = APIClient()
    good = user_hash_for(organization=actors.org, user_id="visitor-9")
    response = client.post(f"/api/widget/{key}/session/", {"user_id": "visitor-9", "user_hash": good}, format="json")
    assert response.status_code == 201 and response.json()["token"].startswith("wt_")
    assert CustomerIdentity.objects.filter(organization=actors.org, source="widget", external_id="visitor-9").exists()

    wrong = user_hash_for(organization=actors.other_org, user_id="visitor-9")
    bad = client.post(f"/api/widget/{key}/session/", {"user_id": "visitor-9", "user_hash": wrong}, format="json")
    assert_error(bad, 401, "invalid_user_hash")
    malformed = client.post(f"/api/widget/{key}/session/", {"user_id": "v", "user_hash": "zz"}, format="json")
    assert_error(malformed, 400, "validation_error")
    unknown = client.post("/api/widget/pk_nope/session/", {"user_id": "visitor-9", "user_hash": good}, format="json")
    assert_error(unknown, 404)


def test_expired_or_forged_tokens_get_401(actors, monkeypatch):
    token = widget_session(APIClient(), actors.org, "visitor-1")
    url = f"/api/widget/{actors.org.widget_publishable_key}/messages/"
    assert _client(token).get(url).status_code == 200
    assert_error(_client(token[:-2] + "xx").get(url), 401)
    assert_error(_client("wt_" + signing.dumps({"o": actors.org.pk, "c": 1})).get(url), 401)
    monkeypatch.setattr("tickets.auth.WIDGET_TOKEN_MAX_AGE", -1)
    error = assert_error(_client(token).get(url), 401)
    assert "expired" in error["message"]


@pytest.mark.django_db(transaction=True)
def test_message_streams_steps_then_the_reply_and_history_keeps_it(actors):
    token = widget_session(APIClient(), actors.org, "visitor-2", name="Rui")
    client = _client(token)
    url = f"/api/widget/{actors.org.widget_publishable_key}/messages/"
    response = client.post(url, {"body": "Hello, my invoice shows a double charge."}, format="json")
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    events = _events(response)
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "message" and kinds[1] == "run_started" and kinds[-1] == "done"
    assert "step" in kinds and "reply" in kinds
    assert kinds.index("step") < kinds.index("reply") < kinds.index("run_finished")
    assert all(data["label"] for kind, data in events if kind == "step")
    reply = next(data["text"] for kind, data in events if kind == "reply")

    history = client.get(url).json()
    assert [(m["author_role"], m["body"]) for m in history] == [
        ("customer", "Hello, my invoice shows a double charge."),
        ("agent", reply),
    ]
    run_id = events[-1][1]["run_id"]
    assert AgentRun.objects.get(pk=run_id).trigger == "widget"
    assert client.get(f"/api/widget/{actors.org.widget_publishable_key}/runs/{run_id}/").json()["reply"] == reply


def test_empty_or_oversized_messages_are_refused(actors):
    client = _client(widget_session(APIClient(), actors.org, "visitor-3"))
    url = f"/api/widget/{actors.org.widget_publishable_key}/messages/"
    assert_error(client.post(url, {"body": ""}, format="json"), 400)
    assert_error(client.post(url, {"body": "x" * 4001}, format="json"), 400)
    assert client.get(url).json() == []


def test_cors_follows_the_organisations_allowed_origins(actors):
    actors.org.widget_allowed_origins = ["https://shop.example"]
    actors.org.save()
    key = actors.org.widget_publishable_key
    client = APIClient()
    preflight = client.options(
        f"/api/widget/{key}/messages/", HTTP_ORIGIN="https://shop.example", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
    )
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "authorization" in preflight["Access-Control-Allow-Headers"]
    refused = client.options(
        f"/api/widget/{key}/messages/", HTTP_ORIGIN="https://evil.example", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
    )
    assert refused.status_code == 403 and "Access-Control-Allow-Origin" not in refused

    user_hash = user_hash_for(organization=actors.org, user_id="v")
    session = client.post(
        f"/api/widget/{key}/session/",
        {"user_id": "v", "user_hash": user_hash},
        format="json",
        HTTP_ORIGIN="https://shop.example",
    )
    assert session.status_code == 201 and session["Access-Control-Allow-Origin"] == "https://shop.example"
    foreign = client.post(
        f"/api/widget/{key}/session/",
        {"user_id": "v", "user_hash": user_hash},
        format="json",
        HTTP_ORIGIN="https://evil.example",
    )
    assert_error(foreign, 403, "origin_not_allowed")
    other_key = actors.other_org.widget_publishable_key
    assert (
        client.options(
            f"/api/widget/{other_key}/messages/",
            HTTP_ORIGIN="https://shop.example",
            HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        ).status_code
        == 403
    )


def test_throttled_per_customer_and_per_ip(actors):
    cache.clear()
    key = actors.org.widget_publishable_key
    rates = {"api_key": None, "widget_customer": "3/minute", "widget_ip": "100/minute"}
    with override_settings(REST_FRAMEWORK={**_rest_framework(), "DEFAULT_THROTTLE_RATES": rates}):
        client = _client(widget_session(APIClient(), actors.org, "visitor-4"))
        for _ in range(3):
            assert client.get(f"/api/widget/{key}/messages/").status_code == 200
        error = assert_error(client.get(f"/api/widget/{key}/messages/"), 429, "throttled")
        assert error["details"]["retry_after"] > 0
        other = _client(widget_session(APIClient(), actors.org, "visitor-5"))
        assert other.get(f"/api/widget/{key}/messages/").status_code == 200  # another customer is not held back
    cache.clear()
    rates = {"api_key": None, "widget_customer": None, "widget_ip": "2/minute"}
    with override_settings(REST_FRAMEWORK={**_rest_framework(), "DEFAULT_THROTTLE_RATES": rates}):
        anonymous = APIClient()
        for _ in range(2):
            anonymous.post(f"/api/widget/{key}/session/", {"user_id": "x", "user_hash": "0" * 64}, format="json")
        response = anonymous.post(f"/api/widget/{key}/session/", {"user_id": "x", "user_hash": "0" * 64}, format="json")
        assert_error(response, 429, "throttled")
        assert response["Retry-After"]
    cache.clear()


def _rest_framework() -> dict:
    from django.conf import settings

    return dict(settings.REST_FRAMEWORK)
