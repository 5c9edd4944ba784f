"""The staff admin in a real Chromium: correct a fact, review agent edits, and stay out of another organisation.

Screenshots of the customer page, a block's history with a diff and the review queue go to tests/screenshots/.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from memory.models import MemoryBlock, PendingMemoryEdit
from tests.admin.conftest import RIGHT_FACT, WRONG_FACT, log_in, shoot
from tests.conftest import Actors

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def context_text(actors: Actors) -> str:
    from support_agent.context import compile_context

    compiled = compile_context(customer=actors.customer)
    return "\n".join(str(message.get("content", "")) for message in compiled.messages)


def test_staff_finds_customer_by_email_and_corrects_a_fact(page: Page, live_server: Any, world: Any) -> None:
    actors, memory = world
    assert WRONG_FACT in context_text(actors)
    log_in(page, live_server.url, "staff")
    page.goto(f"{live_server.url}/admin/support_agent/customermemory/")
    page.fill("#searchbar", "dana@example.com")
    page.press("#searchbar", "Enter")
    expect(page.locator("#result_list")).not_to_contain_text("Lee Park")
    page.click("#result_list >> text=Dana Whitfield")
    expect(page.locator("#block-customer")).to_contain_text(WRONG_FACT)
    shoot(page, "customer-page.png")

    page.click("#block-customer >> text=Edit")
    page.fill("#id_value", f"{RIGHT_FACT}\nUses the Northwind POS sync.")
    page.fill("#id_reason", "Dana confirmed on the phone: bakery, Business plan")
    shoot(page, "block-edit.png")
    page.click("text=Save new version")
    expect(page.locator("#block-customer")).to_contain_text(RIGHT_FACT)
    expect(page.locator("#block-customer")).to_contain_text("staff")

    text = context_text(actors)
    assert RIGHT_FACT in text
    assert WRONG_FACT not in text
    latest = memory.customer_block.history.order_by("-history_id").first()
    assert latest.history_user_id == actors.staff.pk
    assert latest.history_change_reason == "Dana confirmed on the phone: bakery, Business plan"

    page.click("#block-customer >> text=History & diff")
    expect(page.locator("#diff del").first).to_contain_text("runs")
    expect(page.locator("#diff ins").first).to_contain_text("owns")
    shoot(page, "block-history-diff.png")

    page.click(f"a[href$='#step-{memory.step.pk}'] >> nth=0")
    expect(page.locator(f"#step-{memory.step.pk}")).to_contain_text("core_memory_append")
    shoot(page, "agent-run-trace.png")


def test_reviewer_approves_one_edit_and_rejects_another(page: Page, live_server: Any, world: Any) -> None:
    actors, memory = world
    log_in(page, live_server.url, "reviewer")
    page.goto(f"{live_server.url}/admin/memory/pendingmemoryedit/")
    expect(page.locator(f"#edit-{memory.approve_me.pk}")).to_contain_text("Likes numbered steps.")
    shoot(page, "review-queue.png")

    page.click(f"button[value='approve:{memory.approve_me.pk}']")
    expect(page.locator(".messagelist")).to_contain_text("Approved 1 edit")
    page.click(f"button[value='reject:{memory.reject_me.pk}']")
    expect(page.locator(".messagelist")).to_contain_text("Rejected 1 edit")
    expect(page.locator(".sm-empty")).to_contain_text("Nothing pending")

    assert MemoryBlock.objects.get(pk=memory.preferences.pk).value == "Prefers email over phone.\nLikes numbered steps."
    pks = [memory.approve_me.pk, memory.reject_me.pk]
    statuses = dict(PendingMemoryEdit.objects.filter(pk__in=pks).values_list("pk", "status"))
    assert statuses == {memory.approve_me.pk: "approved", memory.reject_me.pk: "rejected"}
    text = context_text(actors)
    assert "Likes numbered steps." in text
    assert "phone calls at night" not in text

    page.goto(f"{live_server.url}/admin/memory/archivalpassage/{memory.current_passage.pk}/change/")
    expect(page.locator(".sm-panel").first).to_contain_text("Reader firmware is 4.2.3 after the update.")
    shoot(page, "archival-passage.png")


def test_staff_of_another_organisation_get_404(page: Page, live_server: Any, world: Any) -> None:
    actors, memory = world
    log_in(page, live_server.url, "other-staff")
    foreign = [
        f"/admin/support_agent/customermemory/{actors.customer.pk}/change/",
        f"/admin/memory/memoryblock/{memory.customer_block.pk}/change/",
        f"/admin/memory/memoryblock/{memory.customer_block.pk}/history/",
        f"/admin/support_agent/agentrun/{memory.run.pk}/change/",
        f"/admin/memory/pendingmemoryedit/{memory.approve_me.pk}/change/",
        f"/admin/memory/archivalpassage/{memory.current_passage.pk}/change/",
    ]
    for url in foreign:
        response = page.goto(f"{live_server.url}{url}")
        assert response is not None
        assert response.status == 404, url
        assert "Dana" not in page.content()
    # Their own customer opens normally.
    response = page.goto(f"{live_server.url}/admin/support_agent/customermemory/{actors.stranger.pk}/change/")
    assert response is not None and response.status == 200
    expect(page.locator("h1")).to_contain_text("Sam Stranger")
