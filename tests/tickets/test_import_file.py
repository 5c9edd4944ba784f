"""The NDJSON file import: documented errors that name their line, nothing half-stored, everything else in;
memory formation over the imported backlog; the dry run; the agent finding an imported earlier ticket."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from memory.models import ArchivalPassage, MessageEmbedding
from support_agent.demo_data import demo_history_ndjson
from support_agent.models import AgentRun
from support_agent.services import SUMMARY_TAG, agent_run
from tests.conftest import Actors
from tickets.models import Customer, ImportJob, Organization, Ticket, TicketMessage
from tickets.services import message_ingest


def ticket_line(ticket_id: str, customer: str = "c-1", status: str = "solved", **extra: Any) -> str:
    data: dict[str, Any] = {
        "id": ticket_id,
        "subject": f"Ticket {ticket_id}",
        "status": status,
        "created_at": "2025-03-01T09:00:00Z",
        "updated_at": "2025-03-02T09:00:00Z",
        "customer": {"id": customer, "name": f"Customer {customer}", "email": f"{customer}@example.com"},
        "messages": [
            {"id": "m1", "author": "customer", "body": f"Help with {ticket_id}", "created_at": "2025-03-01T09:00:00Z"},
            {
                "id": "m2",
                "author": "staff",
                "author_name": "Ada",
                "body": f"Fixed {ticket_id}",
                "created_at": "2025-03-01T10:00:00Z",
            },
            {
                "id": "m3",
                "author": "staff",
                "body": "internal: refund approved",
                "public": False,
                "created_at": "2025-03-01T10:05:00Z",
            },
        ],
    }
    data.update(extra)
    return json.dumps(data)


def run_import(org: Organization, path: Path, *options: str) -> tuple[str, ImportJob]:
    out = StringIO()
    call_command("import_history", "--org", org.slug, "--file", str(path), *options, stdout=out, stderr=StringIO())
    return out.getvalue(), ImportJob.objects.filter(organization=org).order_by("-created_at").first()  # type: ignore[return-value]


def test_bad_lines_give_documented_errors_and_everything_else_is_stored(actors: Actors, tmp_path: Path) -> None:
    unknown_field = json.loads(ticket_line("T-3"))
    unknown_field["customer"]["phone"] = "+44 20 7946 0000"
    bad_time = json.loads(ticket_line("T-5"))
    bad_time["messages"][1]["created_at"] = "last Tuesday"
    lines = [
        ticket_line("T-1"),
        '{"id": "T-2", "customer": {"id": "c-2"}, "messages": [',  # cut off mid-line
        json.dumps(unknown_field),
        ticket_line("T-4", customer="c-2", status="open"),
        json.dumps(bad_time),
        ticket_line("T-1", customer="c-9"),  # the same ticket again
        "",
        ticket_line("T-6", customer="c-2"),
    ]
    path = tmp_path / "export.ndjson"
    path.write_text("\n".join(lines) + "\n")
    output, job = run_import(actors.org, path, "--no-consolidate")
    assert (job.status, job.tickets_done, job.messages_done, job.errors) == ("finished", 3, 9, 5)
    errors = {entry["where"]: entry["error"] for entry in job.error_log}
    assert errors["line 2"].startswith("not valid JSON")
    assert errors["line 3"] == "unknown customer field 'phone'"
    assert "unreadable time 'last Tuesday'" in errors["line 5"]
    assert errors["line 6"] == "duplicate ticket 'T-1' (first on line 1)"
    assert errors["line 7"] == "empty line"
    assert "line 3: unknown customer field 'phone'" in output
    # A bad line stores nothing of its ticket; the good lines are whole.
    stored = Ticket.objects.filter(organization=actors.org, integration__isnull=True).exclude(
        external_id__in=["t-1", "t-2"]
    )
    assert sorted(stored.values_list("external_id", flat=True)) == ["T-1", "T-4", "T-6"]
    assert not Customer.objects.filter(organization=actors.org, email__in=["c-9@example.com"]).exists()
    note = TicketMessage.objects.get(ticket__external_id="T-1", external_id="m3")
    assert (note.is_public, note.author_role) == (False, "staff")
    assert TicketMessage.objects.get(ticket__external_id="T-1", external_id="m2").author_name == "Ada"
    assert MessageEmbedding.objects.filter(message__ticket__in=stored).count() == 9
    # The same file again changes nothing: same ids, same rows.
    _, again = run_import(actors.org, path, "--no-consolidate")
    assert again.pk != job.pk and (again.tickets_done, again.messages_done, again.errors) == (3, 0, 5)
    assert TicketMessage.objects.filter(ticket__in=stored).count() == 9


def test_missing_file_and_unknown_org_are_clear_errors(actors: Actors, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="no such file"):
        call_command("import_history", "--org", "acme", "--file", str(tmp_path / "nope.ndjson"), stdout=StringIO())
    with pytest.raises(CommandError, match="no organisation"):
        call_command("import_history", "--org", "nobody", "--file", "x.ndjson", stdout=StringIO())
    with pytest.raises(CommandError, match="has no intercom integration"):
        call_command("import_history", "--org", "acme", "--integration", "intercom", stdout=StringIO())


def test_solved_imported_tickets_are_consolidated_per_customer_oldest_first_and_never_answered(
    actors: Actors, tmp_path: Path
) -> None:
    lines = [
        ticket_line("A-2", customer="c-1", created_at="2025-05-01T09:00:00Z", updated_at="2025-05-02T09:00:00Z"),
        ticket_line("A-1", customer="c-1", created_at="2025-01-01T09:00:00Z", updated_at="2025-01-02T09:00:00Z"),
        ticket_line("B-1", customer="c-2"),
        ticket_line("B-2", customer="c-2", status="open"),
    ]
    path = tmp_path / "history.ndjson"
    path.write_text("\n".join(lines) + "\n")
    _, job = run_import(actors.org, path)
    assert (job.status, job.consolidations_total, job.consolidations_done) == ("finished", 3, 3)
    runs = list(AgentRun.objects.filter(organization=actors.org).order_by("pk"))
    assert all(run.trigger == AgentRun.Trigger.CONSOLIDATION and run.status == "completed" for run in runs)
    ordered = [run.ticket.external_id for run in runs if run.ticket is not None]
    assert ordered.index("A-1") < ordered.index("A-2") and sorted(ordered) == ["A-1", "A-2", "B-1"]
    summaries = ArchivalPassage.objects.filter(organization=actors.org, tags__contains=[SUMMARY_TAG])
    assert summaries.count() == 3
    assert not TicketMessage.objects.filter(organization=actors.org, author_role="agent").exists()
    # Resuming a finished consolidation (a restarted import) runs nothing twice.
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.CONSOLIDATING)
    from tickets.imports import import_job_run

    import_job_run(job_id=job.pk)
    assert AgentRun.objects.filter(organization=actors.org).count() == 3


def test_dry_run_stores_nothing_and_estimates_the_consolidation(actors: Actors, tmp_path: Path, settings: Any) -> None:
    path = tmp_path / "history.ndjson"
    path.write_text("\n".join([ticket_line("D-1"), ticket_line("D-2", status="open"), "{oops"]) + "\n")
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"  # a model is configured; nothing may be sent to it
    settings.SUPPORTMEM_MODEL = "gpt-4o-mini"
    before = (Ticket.objects.count(), TicketMessage.objects.count(), ImportJob.objects.count())
    out = StringIO()
    call_command("import_history", "--org", "acme", "--file", str(path), "--dry-run", stdout=out, stderr=StringIO())
    text = out.getvalue()
    assert "Dry run: 2 tickets, 6 messages, 1 solved, 1 errors; nothing stored." in text
    assert "line 3: not valid JSON" in text
    assert "Consolidation: 1 runs with gpt-4o-mini: about " in text
    prompt = int(text.split("about ")[1].split(" prompt")[0])
    assert prompt > 1000  # instructions and tool schemas twice, plus the transcript
    assert (Ticket.objects.count(), TicketMessage.objects.count(), ImportJob.objects.count()) == before
    assert not AgentRun.objects.exists()


def test_after_importing_the_demo_history_the_agent_finds_an_earlier_ticket(db: None, tmp_path: Path) -> None:
    org = Organization.objects.create(name="Northwind", slug="northwind")
    path = tmp_path / "demo.ndjson"
    path.write_text("\n".join(demo_history_ndjson(timezone.now())) + "\n")
    _, job = run_import(org, path)
    assert (job.status, job.errors) == ("finished", 0)
    dana = Customer.objects.get(organization=org, email="dana.whitfield@example.com")
    assert dana.tickets.count() == 3
    question, _ = message_ingest(
        customer=dana,
        body="How did you fix the card reader sync last time?",
        author_role="customer",
        announce=False,
    )
    run = agent_run(customer=dana, trigger=AgentRun.Trigger.MESSAGE, message=question)
    assert run.status == "completed"
    assert run.reply.startswith("(offline model)")
    # The earlier ticket is found through the summary its consolidation archived at import time.
    assert "Here is what I found" in run.reply
    assert "update to 4.2.3" in run.reply and "summary of ticket" in run.reply
