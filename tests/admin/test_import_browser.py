"""Staff start a history import from the integration's page in a real Chromium and watch it run and finish.

Screenshots of a running and a finished import go to tests/screenshots/ (the README shows them).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.admin.conftest import log_in, shoot
from tests.conftest import Actors, build_actors
from tickets.helpdesk_fakes import FakeZendesk
from tickets.models import ImportJob, Integration

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def zendesk(live_server: Any) -> Iterator[tuple[Actors, FakeZendesk, Integration]]:
    actors = build_actors()
    with FakeZendesk(tickets=60, comments=4, customers=12, per_page_max=20, delay=0.04) as fake:
        integration = Integration.objects.create(
            organization=actors.org,
            kind="zendesk",
            name="Zendesk (acme.zendesk.com)",
            outbound_base_url=fake.url,
            outbound_credentials={"email": "admin@example.com", "api_token": "secret-token"},
        )
        yield actors, fake, integration


def test_staff_start_an_import_and_see_its_progress_then_its_result(
    page: Page,
    live_server: Any,
    zendesk: tuple[Actors, FakeZendesk, Integration],
) -> None:
    actors, _fake, integration = zendesk
    log_in(page, live_server.url, "staff")
    page.goto(f"{live_server.url}/admin/tickets/integration/{integration.pk}/change/")
    expect(page.locator("#history-import")).to_contain_text("No import yet")
    page.uncheck("input[name=consolidate]")
    page.click("#start-import")
    expect(page.locator("#import-progress")).to_contain_text("Running", timeout=20_000)
    expect(page.locator("#import-progress .sm-messages")).not_to_have_text("0", timeout=30_000)
    shoot(page, "import-running.png")
    expect(page.locator("#import-progress")).to_contain_text("Finished", timeout=240_000)
    expect(page.locator("#import-progress .sm-tickets")).to_have_text("60 of 60")
    expect(page.locator("#import-progress .sm-messages")).to_have_text("240")
    expect(page.locator("#import-progress .sm-errors")).to_have_text("0")
    shoot(page, "import-finished.png")
    job = ImportJob.objects.get(integration=integration)
    assert (job.status, job.messages_done) == (ImportJob.Status.FINISHED, 240)
    # The integration's page lists it, and another organisation's staff cannot see it.
    page.goto(f"{live_server.url}/admin/tickets/integration/{integration.pk}/change/")
    expect(page.locator(f"#import-{job.pk}")).to_contain_text("Finished")
    page.context.clear_cookies()
    log_in(page, live_server.url, "other-staff")
    response = page.goto(f"{live_server.url}/admin/tickets/importjob/{job.pk}/change/")
    assert response is not None and response.status == 404
    assert actors.other_org.import_jobs.count() == 0
