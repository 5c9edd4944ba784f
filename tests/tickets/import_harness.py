"""The must-show checks of a helpdesk history reader, written once for every vendor.

Each vendor is described once in an ``ImportCase`` (tests/tickets/import_cases.py: how to connect an integration
to its loopback fake, how ids look, what webhook the vendor sends for one message). test_import_vendors.py runs
these checks over every vendor: faults retried (429 with Retry-After, 500, a dropped connection), an expired token
that fails clearly and resumes, a webhook for an imported ticket during the import, and an import stopped dead
mid-way then resumed; the SIGKILL of a real ``import_history`` process runs for one vendor (the engine that
checkpoints and resumes, tickets/imports.py, is the same for all). A vendor's own module runs the paginated
import and checks the requests its fake saw.
Every fake serves the same generated history (``tickets.helpdesk_fakes.common``), so the facts checked here are
the same for every vendor.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from memory.models import MessageEmbedding
from support_agent.models import AgentRun
from tests.tickets.live_procs import ROOT, child_env, wait_until
from tickets.helpdesk_fakes.common import FakeHelpdesk, Fault
from tickets.helpdesks.history import HistoryReader, ImportAuthError
from tickets.imports import import_job_run, import_job_start
from tickets.intake import webhook_event_process, webhook_intake
from tickets.models import ImportJob, Integration, Organization, Ticket, TicketMessage


@dataclass
class ImportCase:
    """One vendor, as the checks need to know it.

    - ``fake(**options)``: a new (not started) fake with those FakeHelpdesk options;
    - ``integration_fields(fake)``: the Integration fields that point at the started fake (base URL, credentials);
    - ``reader(integration, page_size)``: the vendor's reader, paging by ``page_size`` where the API lets it;
    - ``ticket_id(n)`` / ``message_id(n, j)`` / ``customer_id(fake, n)``: the external ids stored for generated
      ticket n, its message j and its customer (what the webhooks store too);
    - ``webhook(fake, n, j)``: (headers, payload) of the webhook the vendor sends when message j of ticket n is
      added, or None when the vendor sends none for it;
    - ``list_path`` / ``message_path(n)``: substrings of the request paths that list tickets and read ticket n's
      messages (where faults are injected);
    - ``staff_name``: the name stored on an agent's message.
    """

    kind: str
    fake: Callable[..., FakeHelpdesk]
    integration_fields: Callable[[Any], dict[str, Any]]
    reader: Callable[[Integration, int], HistoryReader]
    ticket_id: Callable[[int], str]
    message_id: Callable[[int, int], str]
    customer_id: Callable[[Any, int], str]
    webhook: Callable[[Any, int, int], tuple[dict[str, str], dict[str, Any]] | None]
    list_path: str
    message_path: Callable[[int], str]
    staff_name: str = "Sam Support"
    vendor: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.vendor or self.kind.title()


def connect(case: ImportCase, org: Organization, fake: Any) -> Integration:
    return Integration.objects.create(organization=org, kind=case.kind, **case.integration_fields(fake))


def rows(org: Organization) -> set[tuple[str, str, str, str, bool, str]]:
    """Everything an import stores, by external ids: what two imports must agree on."""
    return set(
        TicketMessage.objects.filter(organization=org, ticket__integration__isnull=False).values_list(
            "ticket__external_id", "external_id", "author_role", "body", "is_public", "customer__email"
        )
    )


def run(case: ImportCase, org: Organization, *, page_size: int = 10, **options: Any) -> ImportJob:
    integration = Integration.objects.get(organization=org, kind=case.kind)
    job, _ = import_job_start(organization=org, integration=integration, consolidate=False)
    reader = options.pop("reader", None) or case.reader(integration, page_size)
    return import_job_run(job_id=job.pk, reader=reader, **options)


def check_paginated_import(case: ImportCase, org: Organization) -> Any:
    """25 tickets of 5 messages from 7 customers, listed 10 a page: every ticket once, in order, with ids, roles,
    notes, customers and embeddings; no agent run. Returns the fake, for vendor-specific checks of its requests."""
    with case.fake(tickets=25, comments=5, customers=7) as fake:
        connect(case, org, fake)
        job = run(case, org, page_size=10)
    assert job.status == ImportJob.Status.FINISHED, job.last_error
    assert (job.tickets_done, job.messages_done, job.errors) == (25, 125, 0)
    assert len([r for r in fake.requests if case.list_path in r]) >= 3  # several pages of tickets
    tickets = Ticket.objects.filter(integration__kind=case.kind, organization=org)
    assert tickets.count() == 25
    # Solved tickets: "solved" where the helpdesk has that state, "closed" where closing is how it solves (Intercom).
    assert set(tickets.values_list("status", flat=True)) in ({"open", "solved"}, {"open", "closed"})
    ticket = tickets.get(external_id=case.ticket_id(4))
    assert ticket.subject == fake.subject(4)
    messages = list(ticket.messages.order_by("created_at", "id"))
    assert [m.external_id for m in messages] == [case.message_id(4, j) for j in range(5)]
    assert [m.author_role for m in messages] == ["customer", "staff", "customer", "staff", "customer"]
    assert [m.body for m in messages] == [fake.comment_body(4, j) for j in range(5)]
    assert [m.is_public for m in messages] == [True, True, True, False, True]  # the last agent message is a note
    assert [m.created_at for m in messages] == [fake.message_time(4, j) for j in range(5)]
    assert messages[1].author_name == case.staff_name
    assert ticket.customer.email == "customer4@example.com"
    assert ticket.customer.identities.get().external_id == case.customer_id(fake, 4)
    assert tickets.values("customer").distinct().count() == 7
    assert MessageEmbedding.objects.filter(message__organization=org, message__ticket__in=tickets).count() == 125
    assert not AgentRun.objects.filter(organization=org).exists()  # imported messages never start the agent
    return fake


def check_faults_are_retried(case: ImportCase, org: Organization) -> HistoryReader:
    """A 429 with Retry-After on the ticket list, a 500 and a dropped connection on messages, a 500 on the list:
    all retried, nothing lost, the Retry-After honoured."""
    faults = [
        Fault(case.list_path, "429", retry_after=1.0),
        Fault(case.message_path(3), "500"),
        Fault(case.message_path(5), "drop"),
        Fault(case.list_path, "500"),
    ]
    with case.fake(tickets=12, comments=3, faults=faults) as fake:
        integration = connect(case, org, fake)
        reader = case.reader(integration, 5)
        job = run(case, org, reader=reader)
        remaining = list(fake.faults)
    assert remaining == []
    assert job.status == ImportJob.Status.FINISHED, job.last_error
    assert (job.tickets_done, job.messages_done, job.errors) == (12, 36, 0)
    client = reader.client  # type: ignore[attr-defined]
    assert client.stats.retries >= 4
    assert client.stats.waited_seconds >= 1.0  # the 429's Retry-After was honoured
    return reader


def check_expired_token(case: ImportCase, org: Organization, other_org: Organization, *, after: int = 6) -> None:
    """Credentials refused mid-import: one clear error, the job failed with what was stored kept; once fixed the
    same job resumes and ends with the rows of an import that never stopped."""
    with case.fake(tickets=12, comments=3, expire_after=after) as fake:
        connect(case, org, fake)
        with pytest.raises(ImportAuthError, match=re.escape(f"{case.label} rejected the credentials")):
            run(case, org, page_size=5)
        job = ImportJob.objects.get(organization=org)
        assert job.status == ImportJob.Status.FAILED
        assert "rejected the credentials" in job.last_error
        stored_before = TicketMessage.objects.filter(ticket__integration__kind=case.kind).count()
        assert 0 < stored_before < 36
        fake.expire_after = None
        resumed = run(case, org, page_size=5)
    assert resumed.pk == job.pk
    assert (resumed.status, resumed.tickets_done, resumed.messages_done) == (ImportJob.Status.FINISHED, 12, 36)
    with case.fake(tickets=12, comments=3) as clean:
        connect(case, other_org, clean)
        run(case, other_org, page_size=5)
    assert rows(org) == rows(other_org)


def check_webhooks_during_import(case: ImportCase, org: Organization) -> None:
    """A webhook for a message already imported and one for a ticket not yet imported, delivered mid-import:
    each message is stored once. Which tickets those are depends on the order the helpdesk lists them in (oldest
    first for Zendesk's export, most recently updated first for Front), so they are picked from what is stored."""
    with case.fake(tickets=15, comments=4) as fake:
        integration = connect(case, org, fake)
        delivered: list[str] = []
        early: list[int] = []  # the ticket the webhook reached first, and how many of its messages it stored

        def deliver(n: int, j: int) -> None:
            webhook = case.webhook(fake, n, j)
            assert webhook is not None
            headers, payload = webhook
            body = json.dumps(payload).encode()
            result = webhook_intake(integration=integration, headers=headers, raw_body=body, payload=payload)
            delivered.append(webhook_event_process(event_id=result.event.pk))

        def progress(job: ImportJob) -> None:
            if job.tickets_done == 4 and not delivered:
                stored = set(Ticket.objects.filter(integration=integration).values_list("external_id", flat=True))
                imported = [n for n in range(1, 16) if case.ticket_id(n) in stored]
                pending = [n for n in range(1, 16) if case.ticket_id(n) not in stored]
                assert len(imported) == 4
                later = pending[len(pending) // 2]
                deliver(imported[1], 1)  # already imported: the same message again
                deliver(later, 2)  # not imported yet: arrives first, the import must not add it again
                # Some vendors' webhooks carry the conversation's earlier messages along with the new one.
                messages = TicketMessage.objects.filter(ticket__integration=integration)
                early.extend([later, messages.filter(ticket__external_id=case.ticket_id(later)).count()])

        job = run(case, org, page_size=5, progress=progress)
    assert delivered == ["processed", "processed"]
    assert (job.tickets_done, job.errors) == (15, 0)
    later, stored_first = early
    assert 1 <= stored_first <= 3
    assert job.messages_done == 15 * 4 - stored_first  # the webhook stored those first
    assert TicketMessage.objects.filter(ticket__integration=integration).count() == 15 * 4
    ticket = TicketMessage.objects.filter(ticket__external_id=case.ticket_id(later))
    assert ticket.filter(external_id=case.message_id(later, 2)).count() == 1


class Interrupted(BaseException):
    """A process dying, as the import sees it: not an ``Exception``, so the import's failure handling never runs
    (the job is not marked failed and keeps its last committed checkpoint, as after a SIGKILL)."""


def check_interrupted_resume(case: ImportCase, org: Organization, other_org: Organization) -> None:
    """An import stopped dead mid-way and run again ends with exactly the rows of an uninterrupted import.

    In-process: the stop is raised from the progress hook while a batch of tickets is being stored, once earlier
    batches are committed, so the batch in hand rolls back with its checkpoint and the job is left running, as a
    SIGKILL leaves it. (``check_sigkill_resume`` kills a real ``import_history`` process, for one vendor.)"""
    with case.fake(tickets=20, comments=3, customers=9) as fake:
        integration = connect(case, org, fake)

        def stop_mid_batch(job: ImportJob) -> None:
            committed = ImportJob.objects.values_list("tickets_done", flat=True).get(pk=job.pk)
            if committed >= 5:  # this ticket (at least) is stored but not committed
                raise Interrupted

        with pytest.raises(Interrupted):
            run(case, org, page_size=5, progress=stop_mid_batch)
        stopped = ImportJob.objects.get(organization=org)
        assert stopped.status == ImportJob.Status.RUNNING and 5 <= stopped.tickets_done < 20
        # What the interrupted batch stored was rolled back with its checkpoint: the counters match the rows.
        assert Ticket.objects.filter(integration=integration).count() == stopped.tickets_done
        assert TicketMessage.objects.filter(ticket__integration=integration).count() == stopped.messages_done
        resumed = run(case, org, page_size=5)
        connect(case, other_org, fake)
        run(case, other_org, page_size=5)
    assert resumed.pk == stopped.pk
    assert (resumed.status, resumed.tickets_done, resumed.messages_done) == (ImportJob.Status.FINISHED, 20, 60)
    assert TicketMessage.objects.filter(ticket__integration=integration).count() == 60
    assert rows(org) == rows(other_org)
    assert MessageEmbedding.objects.filter(message__ticket__integration=integration).count() == 60


def check_sigkill_resume(case: ImportCase, tmp_path: Path) -> None:
    """``import_history`` SIGKILLed mid-import and started again ends with exactly the rows of an uninterrupted
    import. Needs ``@pytest.mark.django_db(transaction=True)`` (the child process must see the rows)."""
    org = Organization.objects.create(name="Killed", slug="killed")
    reference_org = Organization.objects.create(name="Uninterrupted", slug="uninterrupted")
    with case.fake(tickets=40, comments=3, customers=9, delay=0.03) as fake:
        connect(case, org, fake)
        connect(case, reference_org, fake)
        env = child_env(redis_url="", tmp=tmp_path)
        env.pop("REDIS_URL")
        args = [sys.executable, "manage.py", "import_history", "--org", "killed", "--integration", case.kind]
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
