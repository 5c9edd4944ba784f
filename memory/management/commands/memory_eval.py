"""Turn-level evidence recall of the product's memory search on a LoCoMo-format file (DESIGN.md section 5).

Each sample becomes one customer of a throwaway organisation: each session a ticket, each turn a message
ingested through ``tickets.services.message_ingest`` (the path every channel takes) with the session date as
its time, then embedded by the same batch service the product runs after a bulk load. Every question of
categories 1-4 is then asked of ``memory.selectors.message_search``, the search the agent's
``conversation_search`` tool calls. The organisation is deleted afterwards.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from memory.embeddings import embeddings_embed_pending
from memory.selectors import message_search
from tickets.models import Customer, Organization, TicketMessage
from tickets.services import TicketChanges, customer_resolve, message_ingest, organization_create, ticket_upsert

SCORED_CATEGORIES = ("1", "2", "3", "4")
SESSION_DATE_FORMAT = "%I:%M %p on %d %B, %Y"
MAX_K = 100


@dataclass
class Sample:
    """One LoCoMo conversation, ingested: its customer and a map from dia_id to message id."""

    customer: Customer
    turns: dict[str, int] = field(default_factory=dict)


@dataclass
class Tally:
    hits: dict[str, dict[int, list[float]]] = field(default_factory=dict)  # category -> k -> recall per question
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, category: str, k: int, recall: float) -> None:
        self.hits.setdefault(category, {}).setdefault(k, []).append(recall)


class Command(BaseCommand):
    help = "Evaluate memory search on a LoCoMo-format file: turn-level evidence recall@k and search latency."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--k", default="5,10,25", help="comma-separated cut-offs (default 5,10,25)")
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("--limit", type=int, default=0, help="evaluate only the first N samples")

    def handle(self, *args: Any, **options: Any) -> None:
        ks = _parse_ks(options["k"])
        samples = _load(options["file"])
        if options["limit"] > 0:
            samples = samples[: options["limit"]]
        organization = organization_create(name="memory_eval (temporary)", slug=f"memory-eval-{uuid.uuid4().hex[:12]}")
        try:
            tally = self._run(organization, samples, ks, quiet=options["json"])
        finally:
            organization.delete()
        report = _report(tally, ks)
        if options["json"]:
            self.stdout.write(json.dumps(report))
        else:
            self._print(report, ks)

    def _run(self, organization: Organization, samples: list[dict[str, Any]], ks: list[int], *, quiet: bool) -> Tally:
        started = time.perf_counter()
        ingested = [_ingest(organization, sample) for sample in samples]
        turns = sum(len(s.turns) for s in ingested)
        if not quiet:
            self.stderr.write(
                f"ingested {turns} turns of {len(samples)} samples in {time.perf_counter() - started:.1f}s"
            )
        started = time.perf_counter()
        embeddings_embed_pending(organization_id=organization.pk)
        if not quiet:
            self.stderr.write(f"embedded them in {time.perf_counter() - started:.1f}s")
        tally = Tally()
        for sample, data in zip(ingested, samples, strict=True):
            _ask(sample, data["qa"], ks, tally)
        return tally

    def _print(self, report: dict[str, Any], ks: list[int]) -> None:
        self.stdout.write(f"questions: {report['questions']}")
        self.stdout.write("recall  " + "  ".join(f"@{k}: {report['recall'][str(k)]:.3f}" for k in ks))
        for category, values in report["by_category"].items():
            row = "  ".join(f"@{k}: {values[str(k)]:.3f}" for k in ks)
            count = report["questions_by_category"][category]
            self.stdout.write(f"  category {category} ({count} questions)  {row}")
        self.stdout.write(f"search ms  p50: {report['search_ms']['p50']:.1f}  p95: {report['search_ms']['p95']:.1f}")


def _parse_ks(raw: str) -> list[int]:
    try:
        ks = sorted({int(part) for part in raw.split(",") if part.strip()})
    except ValueError as exc:
        raise CommandError(f"--k must be comma-separated integers, got {raw!r}") from exc
    if not ks or ks[0] < 1 or ks[-1] > MAX_K:
        raise CommandError(f"--k values must be between 1 and {MAX_K}")
    return ks


def _load(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CommandError(f"Cannot read {path}: {exc}") from exc
    if not isinstance(data, list) or not all(isinstance(s, dict) and "conversation" in s for s in data):
        raise CommandError(f"{path} is not a LoCoMo file: expected a list of samples with a 'conversation'.")
    return data


def _sessions(conversation: dict[str, Any]) -> list[tuple[int, datetime, list[dict[str, Any]]]]:
    """(number, date, turns) of every session that has turns, in order."""
    sessions = []
    for key, turns in conversation.items():
        if not key.startswith("session_") or not isinstance(turns, list) or not turns:
            continue
        number = int(key.removeprefix("session_"))
        raw_date = conversation.get(f"{key}_date_time", "")
        try:
            when = datetime.strptime(raw_date, SESSION_DATE_FORMAT).replace(tzinfo=UTC)
        except ValueError as exc:
            raise CommandError(f"Session {key} has an unreadable date {raw_date!r}") from exc
        sessions.append((number, when, turns))
    return sorted(sessions)


def _ingest(organization: Organization, data: dict[str, Any]) -> Sample:
    conversation = data["conversation"]
    speaker_a = conversation.get("speaker_a", "")
    with transaction.atomic():
        customer = customer_resolve(
            organization=organization, source="api", external_id=str(data.get("sample_id")), name=speaker_a
        )
        sample = Sample(customer=customer)
        for number, when, turns in _sessions(conversation):
            ticket = ticket_upsert(
                organization=organization,
                customer=customer,
                integration_id=None,
                external_id=f"{data.get('sample_id')}-session-{number}",
                changes=TicketChanges(subject=f"Session {number}", channel="chat"),
                created_at=when,
                source_updated_at=when,
            )
            for index, turn in enumerate(turns):
                body = turn.get("text", "")
                if turn.get("blip_caption"):  # as the LoCoMo paper does for shared images
                    body = f"{body} [shares {turn['blip_caption']}]"
                message, _ = message_ingest(
                    customer=customer,
                    ticket=ticket,
                    body=body,
                    author_role=(
                        TicketMessage.Role.CUSTOMER if turn.get("speaker") == speaker_a else TicketMessage.Role.STAFF
                    ),
                    author_name=turn.get("speaker", ""),
                    external_id=turn["dia_id"],
                    created_at=when + timedelta(seconds=index),  # keeps the turns in order
                    announce=False,  # a bulk load: embedded in batches below, and no agent runs
                )
                sample.turns[turn["dia_id"]] = message.pk
    return sample


def _ask(sample: Sample, questions: list[dict[str, Any]], ks: list[int], tally: Tally) -> None:
    for item in questions:
        category = str(item.get("category"))
        if category not in SCORED_CATEGORIES:
            continue
        evidence = {sample.turns[e] for e in item.get("evidence", []) if e in sample.turns}
        if not evidence:  # no evidence, or only malformed ids: nothing to recall
            continue
        started = time.perf_counter()
        page = message_search(customer=sample.customer, query=str(item["question"]), page_size=max(ks))
        tally.latencies_ms.append((time.perf_counter() - started) * 1000)
        found = [message.pk for message in page.results]
        for k in ks:
            tally.add(category, k, len(evidence & set(found[:k])) / len(evidence))


def _report(tally: Tally, ks: list[int]) -> dict[str, Any]:
    all_by_k = {k: [r for by_k in tally.hits.values() for r in by_k.get(k, [])] for k in ks}
    by_category = {category: {str(k): _mean(tally.hits[category][k]) for k in ks} for category in sorted(tally.hits)}
    latencies = sorted(tally.latencies_ms)
    return {
        "recall": {str(k): _mean(all_by_k[k]) for k in ks},
        "by_category": by_category,
        "questions": len(all_by_k[ks[0]]),
        "questions_by_category": {category: len(tally.hits[category][ks[0]]) for category in sorted(tally.hits)},
        "search_ms": {"p50": _percentile(latencies, 50), "p95": _percentile(latencies, 95)},
    }


def _mean(values: list[float]) -> float:
    return round(statistics.fmean(values), 4) if values else 0.0


def _percentile(sorted_values: list[float], percent: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(percent / 100 * len(sorted_values) + 0.5) - 1))
    return round(sorted_values[index], 2)
