"""Archival passages (hybrid search, correct, supersede, delete) and the agent run trace."""

from __future__ import annotations

import pytest
from django.test import Client

from memory.models import ArchivalPassage

PASSAGES = "/admin/memory/archivalpassage/"


@pytest.fixture
def staff_client(actors) -> Client:
    client = Client()
    client.force_login(actors.staff)
    return client


def test_search_runs_the_hybrid_search(staff_client, memory):
    html = staff_client.get(PASSAGES, {"q": "which firmware is the card reader on"}).content.decode()
    assert "Reader firmware is 4.2.3 after the update." in html
    assert "Reader firmware is 4.2.1." not in html  # superseded: out of search, visible in the list below
    listing = staff_client.get(PASSAGES, {"state": "superseded"}).content.decode()
    assert "Reader firmware is 4.2.1." in listing and "Reader firmware is 4.2.3" not in listing


def test_correct_a_passage_in_place(staff_client, memory):
    passage = memory.current_passage
    url = f"{PASSAGES}{passage.pk}/change/"
    response = staff_client.post(url, {"action": "correct", "text": "Reader firmware is 4.2.4."})
    assert response.status_code == 302
    passage.refresh_from_db()
    assert passage.text == "Reader firmware is 4.2.4." and passage.change_source == "staff"
    assert passage.invalidated_at is None
    empty = staff_client.post(url, {"action": "correct", "text": "  "})
    assert empty.status_code == 200 and b"This field is required" in empty.content
    passage.refresh_from_db()
    assert passage.text == "Reader firmware is 4.2.4."


def test_supersede_a_passage(staff_client, memory):
    passage = memory.current_passage
    data = {"action": "supersede", "text": "Reader replaced with model R2.", "tags": "pos"}
    response = staff_client.post(f"{PASSAGES}{passage.pk}/change/", data)
    successor = ArchivalPassage.objects.get(text="Reader replaced with model R2.")
    assert response["Location"] == f"{PASSAGES}{successor.pk}/change/"
    passage.refresh_from_db()
    assert passage.invalidated_at is not None and passage.superseded_by_id == successor.pk
    page = staff_client.get(f"{PASSAGES}{passage.pk}/change/").content.decode()
    assert "Supersede it" not in page  # a superseded passage is history: read only
    assert staff_client.post(f"{PASSAGES}{passage.pk}/change/", {"action": "correct", "text": "x"}).status_code == 403


def test_delete_a_passage(staff_client, memory):
    passage = memory.current_passage
    confirm = staff_client.get(f"{PASSAGES}{passage.pk}/delete/")
    assert confirm.status_code == 200
    staff_client.post(f"{PASSAGES}{passage.pk}/delete/", {"post": "yes"})
    assert not ArchivalPassage.objects.filter(pk=passage.pk).exists()


def test_run_trace_shows_steps_and_the_memory_changes_they_made(staff_client, memory):
    html = staff_client.get(f"/admin/support_agent/agentrun/{memory.run.pk}/change/").content.decode()
    assert f'id="step-{memory.step.pk}"' in html
    assert "1795 prompt tokens" in html and "812 ms" in html
    assert "core_memory_append" in html and "Appended to customer." in html
    assert "Let me note what I learnt about Dana." in html
    assert "Model ended its turn" in html
    assert "89 USD each time" in html  # the triggering message
    assert f"/admin/memory/memoryblock/{memory.customer_block.pk}/history/" in html
    assert f"/admin/memory/pendingmemoryedit/{memory.approve_me.pk}/change/" in html


def test_a_step_page_leads_to_its_place_in_the_trace(staff_client, memory):
    response = staff_client.get(f"/admin/support_agent/agentstep/{memory.step.pk}/change/")
    assert response["Location"] == f"/admin/support_agent/agentrun/{memory.run.pk}/change/#step-{memory.step.pk}"


def test_a_real_offline_run_is_traced(staff_client, actors, memory, settings):
    from support_agent.services import agent_run
    from tickets.models import TicketMessage
    from tickets.services import message_ingest

    settings.OPENAI_API_KEY = ""
    settings.OPENAI_BASE_URL = ""
    message, _ = message_ingest(
        customer=actors.customer,
        ticket=actors.open_ticket,
        body="I prefer email. Is the double charge refunded yet?",
        author_role=TicketMessage.Role.CUSTOMER,
        announce=False,
    )
    run = agent_run(customer=actors.customer, trigger="message", message=message, ticket=actors.open_ticket)
    page = staff_client.get(f"/admin/support_agent/agentrun/{run.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    for step in run.steps.all():
        assert f'id="step-{step.pk}"' in html
    assert "send_message" in html
    assert "Is the double charge refunded yet?" in html
