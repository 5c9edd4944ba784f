"""Replay scripted support conversations through the real agent and score its memory and answers.

`agent_eval FILE [--json] [--limit N] [--details]`. The file format and the scoring rules are in
docs/agent-eval.md; the scoring itself is ``support_agent.evaluation``. Each conversation becomes one customer
of a throwaway organisation (deleted afterwards): its sessions are replayed at their scripted dates, every
customer turn gets an agent run with the configured backend (the offline model without OPENAI_* settings), a
session marked solved gets its consolidation run, then the questions are asked in a last chat and the customer's
core and archival memory are compared with the facts the script expects.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from memory.embeddings import embeddings_embed_pending
from memory.models import MemoryBlock
from memory.selectors import passages_for
from support_agent.evaluation import ExpectedFact, FactScore, StoredFact, answers, score_facts
from support_agent.llm import Backend, backend_get
from support_agent.models import AgentRun
from support_agent.services import SUMMARY_TAG, agent_run
from tickets.models import Customer, Organization, Ticket, TicketMessage
from tickets.services import TicketChanges, customer_resolve, message_ingest, organization_create, ticket_upsert

# Core blocks that hold bookkeeping about tickets rather than facts about the customer.
NOT_FACT_BLOCKS = frozenset({"open_issues"})
ROLES = {"customer": TicketMessage.Role.CUSTOMER, "staff": TicketMessage.Role.STAFF}


@dataclass
class Outcome:
    """One conversation's result."""

    id: str
    facts: FactScore
    core: FactScore
    archival: FactScore
    questions: list[dict[str, Any]] = field(default_factory=list)
    failed_runs: int = 0


class Command(BaseCommand):
    help = "Replay scripted conversations through the agent: fact precision/recall and the share of questions answered."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("--limit", type=int, default=0, help="replay only the first N conversations")
        parser.add_argument("--details", action="store_true", help="list wrong and missed facts, unanswered questions")

    def handle(self, *args: Any, **options: Any) -> None:
        conversations = load_conversations(options["file"])
        if options["limit"] > 0:
            conversations = conversations[: options["limit"]]
        # Per-task and model-loading lines would bury the report.
        for name in ("celery", "sentence_transformers", "memory"):
            logging.getLogger(name).setLevel(logging.WARNING)
        backend = backend_get()
        organization = organization_create(name="agent_eval (temporary)", slug=f"agent-eval-{uuid.uuid4().hex[:12]}")
        started = time.perf_counter()
        outcomes = []
        try:
            for index, conversation in enumerate(conversations):
                outcomes.append(replay(organization, conversation, backend))
                if not options["json"] and int(options["verbosity"]) >= 1:
                    self.stderr.write(f"  {index + 1}/{len(conversations)} {conversation['id']}")
        finally:
            organization.delete()
        report = summarise(outcomes, backend=backend.name, seconds=time.perf_counter() - started)
        if options["json"]:
            self.stdout.write(json.dumps(report))
        else:
            self._print(report, outcomes, details=options["details"])

    def _print(self, report: dict[str, Any], outcomes: list[Outcome], *, details: bool) -> None:
        facts = report["facts"]
        self.stdout.write(
            f"{report['conversations']} conversations, {report['questions']} questions, backend {report['backend']}, "
            f"{report['seconds']} s"
        )
        for name in ("all", "core", "archival"):
            row = facts[name]
            self.stdout.write(
                f"facts {name:<8} precision {_fmt(row['precision'])} ({row['correct']}/{row['stored']})  "
                f"recall {_fmt(row['recall'])} ({row['recalled']}/{row['expected']})"
            )
        self.stdout.write(
            f"answered   {_fmt(report['answer_share'])} ({report['answered']}/{report['questions']}), "
            f"median reply {report['reply_chars_median']} characters"
        )
        if report["failed_runs"]:
            self.stdout.write(f"failed runs {report['failed_runs']}")
        if not details:
            return
        for outcome in outcomes:
            for text in outcome.facts.wrong:
                self.stdout.write(f"[{outcome.id}] wrong fact   {text}")
            for text in outcome.facts.missed:
                self.stdout.write(f"[{outcome.id}] missed fact  {text}")
            for question in outcome.questions:
                if not question["answered"]:
                    reply = " ".join(question["reply"].split())[:300]
                    self.stdout.write(
                        f"[{outcome.id}] unanswered   {question['ask']} -> {question['expect']!r}: {reply}"
                    )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def load_conversations(path: Path) -> list[dict[str, Any]]:
    """The conversations of a file, checked enough that a typo fails here with one clear line."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CommandError(f"Cannot read {path}: {exc}") from None
    conversations = data.get("conversations") if isinstance(data, dict) else data
    if not isinstance(conversations, list) or not conversations:
        raise CommandError(f"{path}: expected a list of conversations (or an object with 'conversations').")
    seen: set[str] = set()
    for number, conversation in enumerate(conversations, 1):
        where = f"{path}: conversation {number}"
        if not isinstance(conversation, dict) or not isinstance(conversation.get("id"), str):
            raise CommandError(f"{where} needs a string 'id'.")
        if conversation["id"] in seen:
            raise CommandError(f"{where}: id {conversation['id']!r} appears twice.")
        seen.add(conversation["id"])
        sessions = conversation.get("sessions")
        if not isinstance(sessions, list) or not sessions:
            raise CommandError(f"{where} ({conversation['id']}) needs a non-empty 'sessions' list.")
        for session in sessions:
            turns = session.get("turns") if isinstance(session, dict) else None
            if not isinstance(turns, list) or not all(_turn_role(turn) for turn in turns):
                raise CommandError(
                    f'{where} ({conversation["id"]}): each turn is {{"customer": ..}} or {{"staff": ..}}.'
                )
        for question in conversation.get("questions", []):
            if not isinstance(question, dict) or not question.get("ask") or not question.get("expect"):
                raise CommandError(f"{where} ({conversation['id']}): each question needs 'ask' and 'expect'.")
    return conversations


def _turn_role(turn: Any) -> str | None:
    if not isinstance(turn, dict) or len(turn) != 1:
        return None
    role, text = next(iter(turn.items()))
    return role if role in ROLES and isinstance(text, str) and text.strip() else None


def _expected(conversation: dict[str, Any]) -> list[ExpectedFact]:
    facts = []
    for item in conversation.get("expected_memory", []):
        if isinstance(item, str):
            facts.append(ExpectedFact(item))
        else:
            facts.append(ExpectedFact(str(item["fact"]), str(item.get("tier", ""))))
    return facts


def replay(organization: Organization, conversation: dict[str, Any], backend: Backend) -> Outcome:
    customer = customer_resolve(organization=organization, source="api", external_id=f"eval-{conversation['id']}")
    sessions = conversation["sessions"]
    now = timezone.now()
    failed = 0
    for number, session in enumerate(sessions):
        # Sessions without a date are a week apart, the last one a day ago.
        days_ago = float(session.get("days_ago", 7 * (len(sessions) - number)))
        failed += _replay_session(
            customer, conversation["id"], number, session, now - timedelta(days=days_ago), backend
        )
    questions = []
    asked_at = now - timedelta(minutes=30)
    for index, question in enumerate(conversation.get("questions", [])):
        run = _customer_turn(customer, None, question["ask"], asked_at + timedelta(minutes=2 * index), backend)
        failed += run.status == AgentRun.Status.FAILED
        reply = run.reply or ""
        questions.append(
            {
                "ask": question["ask"],
                "expect": question["expect"],
                "reply": reply,
                "answered": answers(reply, question["expect"]),
            }
        )
    stored = stored_facts(customer)
    expected = _expected(conversation)
    return Outcome(
        id=conversation["id"],
        facts=score_facts(stored, expected),
        core=score_facts(stored, expected, tier="core"),
        archival=score_facts(stored, expected, tier="archival"),
        questions=questions,
        failed_runs=failed,
    )


def _replay_session(
    customer: Customer, conversation_id: str, number: int, session: dict[str, Any], start: datetime, backend: Backend
) -> int:
    ticket = None
    if session.get("subject"):
        ticket = ticket_upsert(
            organization=customer.organization,
            customer=customer,
            integration_id=None,
            external_id=f"{conversation_id}-{number}",
            changes=TicketChanges(subject=session["subject"], status="open"),
            created_at=start,
            source_updated_at=start,
        )
    failed = 0
    for index, turn in enumerate(session["turns"]):
        role = _turn_role(turn)
        at = start + timedelta(minutes=3 * index)
        if role == "customer":
            run = _customer_turn(customer, ticket, turn["customer"], at, backend)
            failed += run.status == AgentRun.Status.FAILED
        else:
            message_ingest(
                customer=customer,
                ticket=ticket,
                body=turn["staff"],
                author_role=ROLES["staff"],
                author_name="Support",
                created_at=at,
                announce=False,
            )
    if ticket is not None and session.get("solved"):
        solved_at = start + timedelta(minutes=3 * len(session["turns"]))
        # Marked solved directly (not through ticket_upsert's signal) so the consolidation runs here, now,
        # with the evaluated backend, whatever the broker settings.
        Ticket.objects.filter(pk=ticket.pk).update(status="solved", solved_at=solved_at, updated_at=solved_at)
        ticket.refresh_from_db()
        run = agent_run(customer=customer, trigger=AgentRun.Trigger.CONSOLIDATION, ticket=ticket, backend=backend)
        failed += run.status == AgentRun.Status.FAILED
    return failed


def _customer_turn(customer: Customer, ticket: Ticket | None, text: str, at: datetime, backend: Backend) -> AgentRun:
    message, _ = message_ingest(
        customer=customer, ticket=ticket, body=text, author_role=ROLES["customer"], created_at=at, announce=False
    )
    embeddings_embed_pending(organization_id=customer.organization_id)
    run = agent_run(customer=customer, trigger=AgentRun.Trigger.MESSAGE, message=message, backend=backend)
    # The replay happens at the script's dates: the reply moves to just after the message it answers.
    TicketMessage.objects.filter(pk__in=[m.pk for m in _replies(run)]).update(created_at=at + timedelta(seconds=30))
    embeddings_embed_pending(organization_id=customer.organization_id)
    return run


def _replies(run: AgentRun) -> list[TicketMessage]:
    started = run.started_at or run.created_at
    return list(
        TicketMessage.objects.filter(
            customer_id=run.customer_id, author_role=TicketMessage.Role.AGENT, created_at__gte=started
        )
    )


def stored_facts(customer: Customer) -> list[StoredFact]:
    """What the customer's memory states: one fact per line of their core blocks (not open_issues, which tracks
    tickets) and one per current archival passage that is not a solved-ticket summary."""
    facts = []
    for block in MemoryBlock.objects.filter(customer=customer).exclude(label__in=NOT_FACT_BLOCKS).order_by("label"):
        facts += [StoredFact(line.strip(), "core", block.label) for line in block.value.splitlines() if line.strip()]
    for passage in passages_for(organization=customer.organization, customer=customer).order_by("pk"):
        if SUMMARY_TAG not in passage.tags:
            facts.append(StoredFact(passage.text.strip(), "archival", f"passage {passage.pk}"))
    return facts


def summarise(outcomes: list[Outcome], *, backend: str, seconds: float) -> dict[str, Any]:
    totals = {name: FactScore() for name in ("all", "core", "archival")}
    for outcome in outcomes:
        totals["all"].add(outcome.facts)
        totals["core"].add(outcome.core)
        totals["archival"].add(outcome.archival)
    questions = [q for outcome in outcomes for q in outcome.questions]
    answered = sum(q["answered"] for q in questions)

    def row(score: FactScore) -> dict[str, Any]:
        precision, recall = score.precision, score.recall
        return {
            "precision": None if precision is None else round(precision, 4),
            "recall": None if recall is None else round(recall, 4),
            "stored": score.stored,
            "correct": score.correct,
            "expected": score.expected,
            "recalled": score.recalled,
        }

    return {
        "backend": backend,
        "conversations": len(outcomes),
        "questions": len(questions),
        "answered": answered,
        "answer_share": round(answered / len(questions), 4) if questions else None,
        # A reply that dumps everything it found would contain many answers: its length keeps that visible.
        "reply_chars_median": statistics.median(len(q["reply"]) for q in questions) if questions else None,
        "facts": {name: row(score) for name, score in totals.items()},
        "failed_runs": sum(outcome.failed_runs for outcome in outcomes),
        "seconds": round(seconds, 1),
    }
