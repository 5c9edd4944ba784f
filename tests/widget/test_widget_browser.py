"""The chat widget in a real Chromium: send a message, watch the steps stream in, get the reply, reload and
find the conversation still there; a network failure is shown, not swallowed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from playwright.sync_api import Browser, Page, expect, sync_playwright

# Playwright's sync API runs an event loop in this thread; the test's own ORM calls are still synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:  # one Chromium for the module; each test opens a page of its own
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def demo_page(live_server: Any, browser: Browser, settings: Any) -> Iterator[Page]:
    settings.SUPPORTMEM_DEMO = True  # as `make run` sets it
    call_command("seed_demo", verbosity=0)
    cache.clear()
    page = browser.new_page()
    page.goto(f"{live_server.url}/widget/demo/")
    expect(page.locator(".smw-status")).not_to_have_text("Connecting…", timeout=30_000)
    yield page
    page.close()
    # Opened while Playwright's event loop ran in this thread, this connection lives in that loop's context,
    # where the database teardown would not see it (and could not drop the test database).
    connection.close()


@pytest.mark.browser
def test_message_streams_steps_then_reply_and_survives_a_reload(demo_page: Page) -> None:
    page = demo_page
    expect(page.locator(".smw-status")).not_to_have_class("smw-status smw-error")
    before = page.locator(".smw-msg").count()

    page.fill(".smw-input", "Hi, did my last bike order invoice get refunded?")
    page.click(".smw-send")
    expect(page.locator(".smw-customer").last).to_contain_text("did my last bike order invoice get refunded")
    expect(page.locator(".smw-step").first).to_be_visible(timeout=60_000)
    reply = page.locator(".smw-agent").last
    expect(reply).to_be_visible(timeout=120_000)
    reply_text = reply.locator(".smw-body").inner_text()
    assert reply_text.strip()
    # The steps were shown before the reply: they come earlier in the log.
    order = page.eval_on_selector_all(".smw-log > li", "items => items.map(i => i.className)")
    assert any("smw-step" in c for c in order)
    first_step = next(i for i, c in enumerate(order) if "smw-step" in c)
    last_reply = max(i for i, c in enumerate(order) if "smw-agent" in c)
    assert first_step < last_reply
    expect(page.locator(".smw-status")).to_have_text("")

    page.reload()
    expect(page.locator(".smw-msg")).to_have_count(before + 2, timeout=30_000)
    expect(page.locator(".smw-customer").last).to_contain_text("did my last bike order invoice get refunded")
    expect(page.locator(".smw-agent .smw-body").last).to_have_text(reply_text)


@pytest.mark.browser
def test_network_failure_is_shown_and_the_message_kept(demo_page: Page) -> None:
    page = demo_page
    page.route("**/messages/", lambda route: route.abort() if route.request.method == "POST" else route.continue_())
    page.fill(".smw-input", "Are you there?")
    page.click(".smw-send")
    expect(page.locator(".smw-status.smw-error")).to_contain_text("Can't reach support", timeout=30_000)
    expect(page.locator(".smw-input")).to_have_value("Are you there?")
