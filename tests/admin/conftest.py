"""Memory for the admin tests: Dana's blocks (one with a wrong fact written by the agent), an agent run with
steps, archival passages current and superseded, and two agent edits waiting for review."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect, sync_playwright

from memory.models import ArchivalPassage, ChangeSource, MemoryBlock, PendingMemoryEdit
from memory.services import (
    Provenance,
    block_agent_edit,
    block_set_value,
    blocks_ensure,
    passage_insert,
    passage_supersede,
)
from support_agent.models import AgentRun, AgentStep
from tests.conftest import Actors, build_actors
from tickets.models import TicketMessage

WRONG_FACT = "Dana Whitfield runs a flower shop on the Starter plan."
RIGHT_FACT = "Dana Whitfield owns Whitfield Bakery, on the Business plan."


@dataclass
class Memory:
    customer_block: MemoryBlock  # label "customer", holds WRONG_FACT written by the agent
    preferences: MemoryBlock
    run: AgentRun
    step: AgentStep
    prompting_message: TicketMessage
    current_passage: ArchivalPassage
    old_passage: ArchivalPassage  # superseded by current_passage
    approve_me: PendingMemoryEdit
    reject_me: PendingMemoryEdit
    stranger_block: MemoryBlock
    stranger_run: AgentRun


def _run_with_step(actors: Actors, message: TicketMessage) -> tuple[AgentRun, AgentStep]:
    now = timezone.now()
    run = AgentRun.objects.create(
        organization=actors.org,
        customer=actors.customer,
        ticket=actors.open_ticket,
        trigger=AgentRun.Trigger.MESSAGE,
        trigger_message=message,
        status=AgentRun.Status.COMPLETED,
        stop_reason=AgentRun.StopReason.END_TURN,
        model_name="gpt-4o-mini",
        reply="I see the double charge for March; I have asked billing to refund one of them.",
        step_count=1,
        prompt_tokens=1830,
        completion_tokens=64,
        started_at=now,
        finished_at=now,
    )
    step = AgentStep.objects.create(
        run=run,
        index=0,
        request_messages=[{"role": "system", "content": "You are the support agent."}],
        response={"role": "assistant", "content": "Let me note what I learnt about Dana."},
        tool_calls=[
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "core_memory_append", "arguments": '{"label": "customer", "content": "x"}'},
            }
        ],
        tool_results=[{"tool_call_id": "call_1", "content": "Appended to customer."}],
        prompt_tokens=1830,
        completion_tokens=64,
        context_tokens=1795,
        latency_ms=812,
    )
    return run, step


def build_memory(actors: Actors) -> Memory:
    blocks_ensure(customer=actors.customer)
    blocks_ensure(customer=actors.stranger)
    message = TicketMessage.objects.filter(ticket=actors.open_ticket).first()
    assert message is not None
    run, step = _run_with_step(actors, message)
    customer_block = MemoryBlock.objects.get(customer=actors.customer, label="customer")
    agent = Provenance(
        source=ChangeSource.AGENT,
        agent_run_id=run.pk,
        agent_step_id=step.pk,
        prompting_message_id=message.pk,
        reason="customer described their business",
    )
    block_set_value(block=customer_block, value=f"{WRONG_FACT}\nUses the Northwind POS sync.", provenance=agent)
    preferences = MemoryBlock.objects.get(customer=actors.customer, label="preferences")
    block_set_value(block=preferences, value="Prefers email over phone.", provenance=agent)
    old, _ = passage_insert(
        organization=actors.org,
        customer=actors.customer,
        text="Reader firmware is 4.2.1.",
        tags=["pos"],
        provenance=agent,
    )
    current = passage_supersede(passage=old, new_text="Reader firmware is 4.2.3 after the update.", provenance=agent)
    old.refresh_from_db()
    actors.org.memory_edits_need_approval = True
    actors.org.save()
    approve_me = block_agent_edit(
        block=preferences, operation="append", new_content="Likes numbered steps.", provenance=agent
    ).pending
    reject_me = block_agent_edit(
        block=preferences,
        operation="replace",
        old_content="email",
        new_content="phone calls at night",
        provenance=agent,
    ).pending
    assert approve_me is not None and reject_me is not None
    stranger_run = AgentRun.objects.create(
        organization=actors.other_org, customer=actors.stranger, trigger=AgentRun.Trigger.MESSAGE
    )
    return Memory(
        customer_block=customer_block,
        preferences=preferences,
        run=run,
        step=step,
        prompting_message=message,
        current_passage=current,
        old_passage=old,
        approve_me=approve_me,
        reject_me=reject_me,
        stranger_block=MemoryBlock.objects.get(customer=actors.stranger, label="customer"),
        stranger_run=stranger_run,
    )


@pytest.fixture
def memory(actors: Actors) -> Memory:
    return build_memory(actors)


# Browser tests: a real Chromium (Debian's), a logged-in page, screenshots under tests/screenshots/.

SCREENSHOTS = Path(__file__).resolve().parent.parent / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Playwright's sync API runs an event loop in this thread; Django's ORM calls from the test body are still
    # synchronous, so tell Django not to refuse them.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def world(live_server: Any) -> tuple[Actors, Memory]:
    actors = build_actors()
    return actors, build_memory(actors)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1320, "height": 900})
    yield context.new_page()
    context.close()


def log_in(page: Page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", f"pw-{username}")
    page.click("input[type=submit]")
    expect(page.locator("#user-tools")).to_contain_text(username.upper(), ignore_case=True)


def shoot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)
