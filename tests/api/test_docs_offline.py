"""The API docs render in a real Chromium with the network cut: Swagger UI and ReDoc come from installed packages."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Route, expect, sync_playwright

SCREENSHOTS = Path(__file__).resolve().parent.parent / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _offline_page(browser: Browser, blocked: list[str]) -> Any:
    """A page whose every request to a host other than loopback is aborted (and remembered)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})

    def cut(route: Route) -> None:
        host = urlsplit(route.request.url).hostname or ""
        if route.request.url.startswith(("data:", "blob:")) or host in LOOPBACK:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", cut)
    return context, context.new_page()


def test_swagger_ui_renders_with_the_network_cut(browser: Browser, live_server: Any) -> None:
    blocked: list[str] = []
    context, page = _offline_page(browser, blocked)
    page.goto(f"{live_server.url}/api/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("supportmem API", timeout=20_000)
    expect(page.locator(".opblock-summary-path").first).to_be_visible()
    expect(page.locator(".swagger-ui")).to_contain_text("/api/customers/{customer_id}/turns/")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "api-docs.png"))
    context.close()
    assert blocked == []


def test_redoc_renders_with_the_network_cut(browser: Browser, live_server: Any) -> None:
    blocked: list[str] = []
    context, page = _offline_page(browser, blocked)
    page.goto(f"{live_server.url}/api/redoc/")
    expect(page.locator("h1")).to_contain_text("supportmem API", timeout=20_000)
    context.close()
    assert blocked == []
