"""The compiled context (for a helpdesk's own LLM) and agent turns with their steps, using the offline model."""

from __future__ import annotations

from support_agent.models import AgentRun
from tests.api.helpers import assert_error
from tickets.models import TicketMessage


def test_compiled_context_has_the_prompt_and_its_token_counts(actors, api):
    body = api.get(f"/api/customers/{actors.customer.pk}/context/").json()
    assert body["messages"][0]["role"] == "system"
    assert body["tokens_total"] > 0 and body["context_window"] > body["tokens_total"]
    assert sum(body["tokens_by_section"].values()) <= body["tokens_total"] + 50
    assert body["memory_pressure"] is False
    assert any("charged twice" in (m.get("content") or "").lower() for m in body["messages"])


def test_turn_runs_the_agent_and_returns_the_run_with_steps(actors, api):
    url = f"/api/customers/{actors.customer.pk}/turns/"
    response = api.post(url, {"body": "What firmware fixed my card reader?"}, format="json")
    assert response.status_code == 201, response.content
    run = response.json()
    assert run["trigger"] == "api" and run["status"] == "completed"
    assert run["steps"] and run["steps"][0]["index"] >= 0
    assert run["reply"]
    stored = TicketMessage.objects.get(pk=run["trigger_message_id"])
    assert stored.body == "What firmware fixed my card reader?" and stored.customer == actors.customer

    runs = api.get(f"/api/customers/{actors.customer.pk}/runs/").json()
    assert [r["id"] for r in runs["results"]] == [run["id"]] and "steps" not in runs["results"][0]
    assert api.get(f"/api/customers/{actors.customer.pk}/runs/{run['id']}/").json()["steps"] == run["steps"]
    assert_error(api.get(f"/api/customers/{actors.other_customer.pk}/runs/{run['id']}/"), 404)


def test_turn_input_is_checked_before_anything_is_stored(actors, api):
    url = f"/api/customers/{actors.customer.pk}/turns/"
    before = TicketMessage.objects.count()
    assert_error(api.post(url, {"body": ""}, format="json"), 400)
    assert_error(api.post(url, {"message": ""}, format="json"), 400)
    assert_error(api.post(url, {}, format="json"), 400)
    both = assert_error(api.post(url, {"body": "hi", "message": "hi"}, format="json"), 400)
    assert "message" in both["details"]
    assert_error(api.post(url, {"body": "hi", "ticket_id": 10**9}, format="json"), 404)
    assert TicketMessage.objects.count() == before and not AgentRun.objects.exists()


def test_turn_takes_body_like_the_widget_and_still_accepts_message(actors, api):
    url = f"/api/customers/{actors.customer.pk}/turns/"
    old = api.post(url, {"message": "Old field name still works."}, format="json")
    assert old.status_code == 201, old.content
    assert TicketMessage.objects.get(pk=old.json()["trigger_message_id"]).body == "Old field name still works."
