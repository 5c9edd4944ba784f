"""Finding 2: internal staff notes must never reach the customer.

A helpdesk stores a note with ``is_public=false`` ("customer is on the fraud watchlist"). Before, the agent
found it with ``conversation_search``/``get_ticket``, read it as "Support staff wrote to the customer", and a
model that quoted it streamed it into the widget. Here the model is hostile on purpose: it searches every way
it can and pastes every tool result it was given into ``send_message``. A customer-audience run must give it
nothing to paste; a staff-audience run (a draft posted as an internal note) may read the note, marked internal.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from memory.services import Provenance, passage_insert
from support_agent.models import AgentRun
from support_agent.services import agent_run
from tests.api.helpers import widget_session
from tests.support_agent.fake_openai import FakeOpenAI, tool_calls
from tickets.auth import api_key_create
from tickets.models import CustomerIdentity, Integration, Ticket, TicketMessage
from tickets.services import TicketChanges, message_ingest, ticket_upsert

NOTE_CANARY = "FRAUDWATCH7731"
PASSAGE_CANARY = "CHARGEBACK4410"
NOTE = f"Customer is on the fraud watchlist (case {NOTE_CANARY}): do not refund, escalate to risk."


@pytest.fixture
def offline(settings) -> None:
    settings.OPENAI_API_KEY = ""
    settings.OPENAI_BASE_URL = ""


@pytest.fixture
def fake_llm(settings):
    server = FakeOpenAI().start()
    settings.OPENAI_API_KEY = "test-key"
    settings.OPENAI_BASE_URL = server.base_url
    settings.SUPPORTMEM_MODEL = "fake-model"
    settings.SUPPORTMEM_LLM_TIMEOUT = 10
    settings.SUPPORTMEM_LLM_MAX_RETRIES = 0
    yield server
    server.stop()


def _plant_note(actors) -> TicketMessage:
    """The helpdesk's internal note on Dana's open ticket, and an archival passage derived from internal notes."""
    note, _ = message_ingest(
        customer=actors.customer,
        ticket=actors.open_ticket,
        body=NOTE,
        author_role=TicketMessage.Role.STAFF,
        author_name="Risk team",
        is_public=False,
        announce=False,
    )
    return note


def _plant_staff_passage(actors) -> None:
    passage_insert(
        organization=actors.org,
        customer=actors.customer,
        text=f"Risk review: fraud watchlist, chargeback case {PASSAGE_CANARY}, refund blocked.",
        tags=["risk"],
        provenance=Provenance(reason="consolidation of a ticket with internal notes"),
        staff_only=True,
    )


def _hostile_model(fake: FakeOpenAI, ticket_id: int) -> None:
    """Step 1 searches everything; step 2 pastes every tool result it received into send_message."""
    fake.script = [
        tool_calls(
            ("conversation_search", {"query": "fraud watchlist refund risk", "request_heartbeat": True}),
            ("get_ticket", {"ticket_id": ticket_id, "request_heartbeat": True}),
            ("search_tickets", {"query": "watchlist", "request_heartbeat": True}),
            ("archival_memory_search", {"query": "watchlist chargeback refund", "request_heartbeat": True}),
            ("list_tickets", {"request_heartbeat": True}),
        ),
        _paste_everything,
    ]


def _paste_everything(body: dict[str, Any]) -> dict[str, Any]:
    seen = "\n".join(str(m.get("content") or "") for m in body["messages"])
    return tool_calls(("send_message", {"message": f"Here is everything I know:\n{seen}"}))


def _sse_text(response: Any) -> str:
    return b"".join(response.streaming_content).decode()


@pytest.mark.django_db(transaction=True)
def test_widget_run_with_the_openai_backend_never_shows_or_streams_the_note(actors, fake_llm):
    _plant_note(actors)
    _plant_staff_passage(actors)
    CustomerIdentity.objects.create(
        organization=actors.org, customer=actors.customer, source="widget", external_id="w-1"
    )
    _hostile_model(fake_llm, actors.open_ticket.pk)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {widget_session(APIClient(), actors.org, 'w-1')}")
    url = f"/api/widget/{actors.org.widget_publishable_key}/messages/"

    stream = _sse_text(client.post(url, {"body": "Am I on some fraud watchlist? I want a refund."}, format="json"))

    run = AgentRun.objects.get(customer=actors.customer, trigger="widget")
    assert (run.status, run.audience) == ("completed", "customer")
    assert run.reply.startswith("Here is everything I know") and "charged twice" in run.reply.lower()
    everything_the_model_read = json.dumps(fake_llm.tool_requests())
    for canary in (NOTE_CANARY, PASSAGE_CANARY):
        assert canary not in stream
        assert canary not in run.reply
        assert canary not in everything_the_model_read
    assert "Support staff wrote to the customer: Customer is on the fraud" not in everything_the_model_read
    assert NOTE_CANARY not in json.dumps(client.get(url).json())


def test_api_turn_with_the_offline_model_never_cites_the_note(actors, offline):
    _plant_note(actors)
    _plant_staff_passage(actors)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(organization=actors.org, name='t')[1]}")

    response = api.post(
        f"/api/customers/{actors.customer.pk}/turns/",
        {"message": "Is there a fraud watchlist note or a chargeback about my refund?"},
        format="json",
    )

    assert response.status_code == 201
    run = AgentRun.objects.get(pk=response.json()["id"])
    assert run.audience == "customer" and run.reply.startswith("(offline model)")
    shown = json.dumps([(step.request_messages, step.tool_results) for step in run.steps.all()])
    assert "conversation_search" in shown and "archival_memory_search" in shown
    for canary in (NOTE_CANARY, PASSAGE_CANARY):
        assert canary not in run.reply and canary not in shown
        assert not TicketMessage.objects.filter(author_role="agent", body__contains=canary).exists()


def _note_mode_ticket(actors) -> Ticket:
    integration = Integration.objects.create(organization=actors.org, kind="zendesk", reply_mode="note")
    return ticket_upsert(
        organization=actors.org,
        customer=actors.customer,
        integration_id=integration.pk,
        external_id="zd-500",
        changes=TicketChanges(subject="Refund request", status="open"),
    )


def test_staff_audience_draft_sees_the_note_marked_internal_and_stays_internal(actors, offline):
    note = _plant_note(actors)
    _plant_staff_passage(actors)
    ticket = _note_mode_ticket(actors)
    asked, _ = message_ingest(
        customer=actors.customer,
        ticket=ticket,
        body="Is there a fraud watchlist or chargeback problem with my refund?",
        author_role="customer",
        announce=False,
    )

    draft = agent_run(customer=actors.customer, trigger=AgentRun.Trigger.MESSAGE, message=asked)

    assert draft.audience == "staff" and draft.status == "completed"
    first = draft.steps.get(index=0)
    context = json.dumps(first.request_messages)
    assert f"Internal note by staff (Risk team), staff only, the customer never saw it: {NOTE}" in context
    assert "Support staff (Risk team) wrote to the customer" not in context
    results = json.dumps(first.tool_results)
    assert NOTE_CANARY in results and "internal note" in results and PASSAGE_CANARY in results
    # The draft goes to staff as an internal note, so it is stored internal: no customer run ever reads it.
    assert draft.reply_message is not None and draft.reply_message.is_public is False

    later = agent_run(customer=actors.customer, trigger=AgentRun.Trigger.API, message=_ask(actors, "Any news?"))
    later_shown = json.dumps([(s.request_messages, s.tool_results) for s in later.steps.all()])
    assert later.audience == "customer"
    assert NOTE_CANARY not in later_shown and draft.reply not in later_shown and NOTE_CANARY not in later.reply
    assert note.pk not in {row["message_id"] for row in _search_rows(later)}


def _ask(actors, text: str) -> TicketMessage:
    message, _ = message_ingest(customer=actors.customer, body=text, author_role="customer", announce=False)
    return message


def _search_rows(run: AgentRun) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for step in run.steps.all():
        for result in step.tool_results:
            payload = json.loads(result["content"]).get("result") or {}
            rows += [row for row in payload.get("results", []) if "message_id" in row]
    return rows


def test_consolidation_summary_leaves_internal_notes_out(actors, offline):
    _plant_note(actors)
    actors.open_ticket.status = "solved"
    actors.open_ticket.save()
    run = agent_run(customer=actors.customer, trigger=AgentRun.Trigger.CONSOLIDATION, ticket=actors.open_ticket)
    assert run.audience == "staff"
    summary = actors.customer.passages.get(tags__contains=["ticket-summary", f"ticket-{actors.open_ticket.pk}"])
    assert NOTE_CANARY not in summary.text and summary.staff_only is False
    assert "charged twice" in summary.text.lower()
