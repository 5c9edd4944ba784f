"""The staff console's newer screens in a real Chromium: the home screen, chats on the customer page, a stale
edit, organisation settings and API keys. Screenshots go to tests/screenshots/."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import Page, expect

from memory.models import ChangeSource, MemoryBlock
from memory.services import Provenance, block_set_value
from support_agent.models import AgentRun
from tests.admin.conftest import log_in, shoot
from tickets.models import ApiKey, Integration, StaffMembership, TicketMessage, WebhookEvent
from tickets.services import message_ingest
from tickets.staff import grant_staff_permissions

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_home_screen_lists_what_needs_attention(page: Page, live_server: Any, world: Any) -> None:
    actors, memory = world
    integration = Integration.objects.create(organization=actors.org, kind="zendesk")
    WebhookEvent.objects.create(
        integration=integration,
        organization=actors.org,
        delivery_key="d-1",
        raw_body="{}",
        status=WebhookEvent.Status.DEAD,
        last_error="payload has no requester",
    )
    AgentRun.objects.create(organization=actors.org, customer=actors.customer, trigger="message", status="failed")
    log_in(page, live_server.url, "staff")
    page.goto(f"{live_server.url}/admin/")
    expect(page.locator("[data-key=pending_edits] .sm-attention-count")).to_have_text("2")
    expect(page.locator("[data-key=dead_events] .sm-attention-count")).to_have_text("1")
    expect(page.locator("[data-key=failed_runs] .sm-attention-count")).to_have_text("1")
    shoot(page, "home.png")
    page.click("[data-key=pending_edits]")
    expect(page.locator(f"#edit-{memory.approve_me.pk}")).to_be_visible()


def test_chat_on_the_customer_page_links_to_its_run(page: Page, live_server: Any, world: Any) -> None:
    actors, memory = world
    asked = timezone.now() - timedelta(minutes=5)
    question, _ = message_ingest(
        customer=actors.customer,
        body="Is the March refund on its way?",
        author_role=TicketMessage.Role.CUSTOMER,
        channel="widget",
        created_at=asked,
        announce=False,
    )
    answer, _ = message_ingest(
        customer=actors.customer,
        body="Yes: billing refunded one of the two March charges on the 3rd.",
        author_role=TicketMessage.Role.AGENT,
        channel="widget",
        created_at=asked + timedelta(seconds=4),
        announce=False,
    )
    AgentRun.objects.filter(pk=memory.run.pk).update(trigger_message=question, reply_message=answer)
    log_in(page, live_server.url, "staff")
    page.goto(f"{live_server.url}/admin/support_agent/customermemory/{actors.customer.pk}/change/")
    conversation = page.locator(".sm-conversation").first
    expect(conversation).to_contain_text("Chat widget")
    expect(conversation).to_contain_text("Is the March refund on its way?")
    shoot(page, "customer-page-chat.png")
    page.click(f"#message-{answer.pk} >> text=written by run #{memory.run.pk}")
    expect(page.locator("h1")).to_contain_text(f"Agent run #{memory.run.pk}")
    page.click("text=see it in the conversation")
    expect(page.locator(f"#message-{answer.pk}")).to_be_visible()


def test_a_stale_edit_shows_the_newer_text(page: Page, live_server: Any, world: Any) -> None:
    actors, memory = world
    block = memory.customer_block
    log_in(page, live_server.url, "staff")
    page.goto(f"{live_server.url}/admin/memory/memoryblock/{block.pk}/change/")
    page.fill("#id_value", "Dana owns Whitfield Bakery.")
    page.fill("#id_reason", "phone call")
    block_set_value(
        block=block,
        value="Dana owns Whitfield Bakery and a café.",
        provenance=Provenance(source=ChangeSource.STAFF, user=actors.reviewer, reason="email from Dana"),
    )
    page.click("text=Save new version")
    block.refresh_from_db()
    expect(page.locator("#stale-edit-current")).to_contain_text("Dana owns Whitfield Bakery and a café.")
    expect(page.locator("#stale-edit")).to_contain_text("email from Dana")
    expect(page.locator("#id_value")).to_have_value("Dana owns Whitfield Bakery.")
    shoot(page, "stale-edit.png")
    page.click(f"text=Replace version {block.version} with my text")
    expect(page.locator(f"#block-{block.label}")).to_contain_text("Dana owns Whitfield Bakery.")
    newer = block.version
    block.refresh_from_db()
    assert block.value == "Dana owns Whitfield Bakery." and block.version == newer + 1


def test_an_org_admin_changes_settings_and_manages_keys(page: Page, live_server: Any, world: Any) -> None:
    actors, _ = world
    owner = get_user_model().objects.create_user(username="owner", password="pw-owner", is_staff=True)
    StaffMembership.objects.create(user=owner, organization=actors.org)
    grant_staff_permissions(owner, org_admin=True)
    log_in(page, live_server.url, "owner")
    page.goto(f"{live_server.url}/admin/tickets/organization/{actors.org.pk}/change/")
    assert actors.org.widget_secret not in page.content()
    page.fill("#id_step_limit", "7")
    page.check("#id_memory_edits_need_approval")
    shoot(page, "organisation-settings.png")
    page.click("input[name=_save]")
    actors.org.refresh_from_db()
    assert actors.org.step_limit == 7 and actors.org.memory_edits_need_approval

    page.goto(f"{live_server.url}/admin/tickets/organization/{actors.org.pk}/change/")
    page.click("text=Rotate")
    actors.org.refresh_from_db()
    expect(page.locator(".messagelist")).to_contain_text(actors.org.widget_secret)

    page.goto(f"{live_server.url}/admin/tickets/apikey/add/")
    page.fill("#id_name", "reporting job")
    page.click("text=Create key")
    key = page.locator("#created-key-value").inner_text().strip()
    assert key.startswith(ApiKey.objects.get(name="reporting job").prefix)
    shoot(page, "api-key-created.png")
    page.goto(f"{live_server.url}/admin/tickets/apikey/")
    page.check("#result_list input[name=_selected_action]")
    page.select_option("select[name=action]", "revoke")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text("Revoked 1 key")
    assert ApiKey.objects.get(name="reporting job").revoked_at is not None


def test_staff_add_a_block_then_delete_it(page: Page, live_server: Any, world: Any) -> None:
    actors, _ = world
    log_in(page, live_server.url, "staff")
    page.goto(f"{live_server.url}/admin/support_agent/customermemory/{actors.customer.pk}/change/")
    page.click("#add-block")
    page.fill("#id_label", "devices")
    page.fill("#id_description", "Hardware the customer owns")
    page.fill("#id_value", "Card reader R2, firmware 4.2.3")
    page.fill("#id_reason", "listed on the phone")
    page.click("text=Create block")
    expect(page.locator("#block-devices")).to_contain_text("Card reader R2, firmware 4.2.3")
    shoot(page, "block-created.png")
    page.click("#block-devices >> text=Delete")
    page.click("input[type=submit]")  # Django's confirmation page
    expect(page.locator("#block-devices")).to_have_count(0)
    assert not MemoryBlock.objects.filter(customer=actors.customer, label="devices").exists()
