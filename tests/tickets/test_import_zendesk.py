"""Zendesk history import against a loopback fake that speaks the incremental export and comments API: paging,
429 with Retry-After, 500, a dropped connection, an expired token, a webhook during the import, a SIGKILL."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from memory.models import MessageEmbedding
from support_agent.models import AgentRun
from tests.conftest import Actors
from tests.tickets.live_procs import ROOT, child_env, wait_until
from tickets.helpdesk_fakes import FakeZendesk, Fault
from tickets.helpdesks.history import ImportAuthError
from tickets.helpdesks.zendesk import ZendeskReader
from tickets.imports import import_job_run, import_job_start
from tickets.intake import webhook_event_process, webhook_intake
from tickets.models import ImportJob, Integration, Organization, Ticket, TicketMessage

CREDENTIALS = {"email": "admin@example.com", "api_token": "secret-token"}


def connect(org: Organization, fake: FakeZendesk) -> Integration:
    return Integration.objects.create(
        organization=org, kind="zendesk", outbound_base_url=fake.url, outbound_credentials=CREDENTIALS
    )


def rows(org: Organization) -> set[tuple[str, str, str, str, bool, str]]:
    """Everything an import stores, by external ids: what two imports must agree on."""
    return set(
        TicketMessage.objects.filter(organization=org, ticket__integration__isnull=False).values_list(
            "ticket__external_id", "external_id", "author_role", "body", "is_public", "customer__email"
        )
    )


def run(org: Organization, fake: FakeZendesk, **options: Any) -> ImportJob:
    integration = Integration.objects.get(organization=org, kind="zendesk")
    job, _ = import_job_start(organization=org, integration=integration, consolidate=False)
    reader = options.pop("reader", None) or ZendeskReader(integration, per_page=options.pop("per_page", 10))
    return import_job_run(job_id=job.pk, reader=reader, **options)


def test_paginated_import_stores_every_ticket_once_with_ids_roles_and_embeddings(actors: Actors) -> None:
    with FakeZendesk(tickets=25, comments=5, customers=7, comments_page_max=2) as fake:
        connect(actors.org, fake)
        job = run(actors.org, fake)
        export_pages = [r for r in fake.requests if "incremental" in r]
        comment_pages = [r for r in fake.requests if "comments.json" in r]
    assert job.status == ImportJob.Status.FINISHED
    assert (job.tickets_done, job.messages_done, job.errors) == (25, 125, 0)
    assert len(export_pages) == 3  # 10 + 10 + 5 tickets
    assert len(comment_pages) == 25 * 3  # comments in pages of 2
    tickets = Ticket.objects.filter(integration__kind="zendesk", organization=actors.org)
    assert tickets.count() == 25
    assert set(tickets.values_list("status", flat=True)) == {"open", "solved"}
    first = Ticket.objects.get(organization=actors.org, external_id="4")
    messages = list(first.messages.order_by("created_at"))
    assert [m.external_id for m in messages] == ["description", "4001", "4002", "4003", "4004"]
    assert [m.author_role for m in messages] == ["customer", "staff", "customer", "staff", "customer"]
    assert messages[1].author_name == "Sam Support"
    assert first.customer.email == "customer4@example.com"
    assert first.customer.identities.get().external_id == "1000004"
    assert MessageEmbedding.objects.filter(message__organization=actors.org, message__ticket__in=tickets).count() == 125
    # Imported messages never start the agent, and nothing was consolidated with --no-consolidate.
    assert not AgentRun.objects.filter(organization=actors.org).exists()


def test_rate_limit_server_errors_and_dropped_connections_are_retried(actors: Actors) -> None:
    faults = [
        Fault("incremental", "429", retry_after=1.0),
        Fault("tickets/3/comments", "500"),
        Fault("tickets/5/comments", "drop"),
        Fault("incremental", "500"),
    ]
    with FakeZendesk(tickets=12, comments=3, faults=faults) as fake:
        integration = connect(actors.org, fake)
        reader = ZendeskReader(integration, per_page=5)
        job = run(actors.org, fake, reader=reader)
        remaining = list(fake.faults)
    assert remaining == []
    assert job.status == ImportJob.Status.FINISHED
    assert (job.tickets_done, job.messages_done, job.errors) == (12, 36, 0)
    assert reader.client.stats.retries == 4
    assert reader.client.stats.waited_seconds >= 1.0  # the 429's Retry-After was honoured


def test_expired_token_fails_clearly_and_the_import_resumes_once_fixed(actors: Actors) -> None:
    with FakeZendesk(tickets=12, comments=3, expire_after=6) as fake:
        connect(actors.org, fake)
        with pytest.raises(ImportAuthError, match="Zendesk rejected the credentials \\(401"):
            run(actors.org, fake, per_page=5)
        job = ImportJob.objects.get(organization=actors.org)
        assert job.status == ImportJob.Status.FAILED
        assert "rejected the credentials" in job.last_error
        stored_before = TicketMessage.objects.filter(ticket__integration__kind="zendesk").count()
        assert 0 < stored_before < 36
        fake.expire_after = None
        resumed = run(actors.org, fake, per_page=5)
    assert resumed.pk == job.pk
    assert (resumed.status, resumed.tickets_done, resumed.messages_done) == (ImportJob.Status.FINISHED, 12, 36)
    with FakeZendesk(tickets=12, comments=3) as clean:
        connect(actors.other_org, clean)
        run(actors.other_org, clean)
    assert rows(actors.org) == rows(actors.other_org)  # the same rows as an import that never stopped


def test_webhooks_for_imported_tickets_during_the_import_create_no_duplicates(actors: Actors) -> None:
    with FakeZendesk(tickets=15, comments=4) as fake:
        integration = connect(actors.org, fake)
        Integration.objects.filter(pk=integration.pk).update(signing_secret="unused-here")
        delivered: list[str] = []

        def deliver(n: int, j: int) -> None:
            payload = fake.webhook_comment_event(n, j)
            body = json.dumps(payload).encode()
            result = webhook_intake(integration=integration, headers={}, raw_body=body, payload=payload)
            delivered.append(webhook_event_process(event_id=result.event.pk))

        def progress(job: ImportJob) -> None:
            if job.tickets_done == 4 and not delivered:
                deliver(2, 1)  # already imported: the same comment again
                deliver(11, 3)  # not imported yet: arrives first, the import must not add it again

        job = run(actors.org, fake, per_page=5, progress=progress)
    assert delivered == ["processed", "processed"]
    assert (job.tickets_done, job.errors) == (15, 0)
    assert job.messages_done == 15 * 4 - 1  # the webhook stored one of them first
    assert TicketMessage.objects.filter(ticket__integration=integration).count() == 15 * 4
    assert TicketMessage.objects.filter(ticket__external_id="11", external_id="11003").count() == 1


@pytest.mark.django_db(transaction=True)
def test_import_killed_mid_way_and_restarted_ends_with_exactly_the_rows_of_an_uninterrupted_one(
    tmp_path: Any,
) -> None:
    org = Organization.objects.create(name="Killed", slug="killed")
    reference_org = Organization.objects.create(name="Uninterrupted", slug="uninterrupted")
    with FakeZendesk(tickets=40, comments=3, customers=9, delay=0.03) as fake:
        connect(org, fake)
        connect(reference_org, fake)
        env = child_env(redis_url="", tmp=tmp_path)
        env.pop("REDIS_URL")
        args = [sys.executable, "manage.py", "import_history", "--org", "killed", "--integration", "zendesk"]
        args.append("--no-consolidate")
        log = (tmp_path / "import.log").open("ab")
        child = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

        def some_stored() -> bool:
            job = ImportJob.objects.filter(organization=org).first()
            return job is not None and job.tickets_done >= 8

        wait_until(some_stored, timeout=180, what="the first tickets of the import")
        child.kill()  # SIGKILL: no cleanup, no final checkpoint
        child.wait(timeout=30)
        killed_at = ImportJob.objects.get(organization=org)
        assert killed_at.status == ImportJob.Status.RUNNING and 8 <= killed_at.tickets_done < 40
        fake.delay = 0
        finished = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert finished.returncode == 0, finished.stdout + finished.stderr
        assert "Resuming import" in finished.stdout
        job, _ = import_job_start(organization=reference_org, integration=reference_org.integrations.get())
        import_job_run(job_id=job.pk)
    resumed = ImportJob.objects.get(organization=org)
    assert (resumed.status, resumed.tickets_done, resumed.messages_done) == (ImportJob.Status.FINISHED, 40, 120)
    assert TicketMessage.objects.filter(organization=org).count() == 120
    assert rows(org) == rows(reference_org)
    assert MessageEmbedding.objects.filter(message__organization=org).count() == 120
