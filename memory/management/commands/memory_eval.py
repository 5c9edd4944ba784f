"""Turn-level evidence recall of the product's memory search on a LoCoMo-format file (DESIGN.md section 5).

Each sample becomes one customer of a throwaway organisation: each session a ticket, each turn a message
ingested through ``tickets.services.message_ingest`` (the path every channel takes) with the session date as
its time, then embedded by the same batch service the product runs after a bulk load. Every question of
categories 1-4 is then asked of ``memory.selectors.message_search``, the search the agent's
``conversation_search`` tool calls. The organisation is deleted afterwards.

``--target archival`` also stores every turn as an archival passage of the customer (``passage_insert``,
"<speaker>: <text>", dated like its session, pointing to its message) and asks ``passage_search`` instead.
``--target organisation`` asks ``passage_search`` of the whole organisation, as staff search: every conversation's
passages compete for each question (another conversation's passage takes a place and is never evidence).
``--split`` fixes which conversations are asked: ``tune`` (the first five) is where ranking constants are
chosen, ``validate`` (the other five) where a change must also improve (docs/recall.md). ``--keep`` leaves the
ingested, embedded organisation in the database (both targets) and ``--reuse SLUG`` asks its questions again
without ingesting or embedding anything.
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
from django.db import connection, transaction

from memory.embeddings import (
    DEFAULT_BATCH_SIZE,
    _id_batches,
    embeddings_embed_pending,
    message_embeddings_compute,
    pending_messages,
)
from memory.models import ArchivalPassage
from memory.receivers import embed_saved_passage
from memory.selectors import message_search, passage_search
from memory.services import Provenance, passage_insert
from memory.signals_out import passage_saved
from tickets.models import Customer, Organization, TicketMessage
from tickets.services import TicketChanges, customer_resolve, message_ingest, organization_create, ticket_upsert

SCORED_CATEGORIES = ("1", "2", "3", "4")
SESSION_DATE_FORMAT = "%I:%M %p on %d %B, %Y"
MAX_K = 100
# LoCoMo's ten conversations: constants are chosen on the first five and confirmed on the other five.
SPLITS = {"tune": range(0, 5), "validate": range(5, 10), "all": range(0, 10_000)}
TARGETS = ("messages", "archival", "organisation")
PASSAGE_EMBED_RECEIVER = "memory.embed_saved_passage"


@dataclass
class Sample:
    """One LoCoMo conversation, ingested: its customer and a map from dia_id to message id."""

    customer: Customer
    turns: dict[str, int] = field(default_factory=dict)
    passages: dict[int, int] = field(default_factory=dict)  # archival passage id -> the message it was made from


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
        parser.add_argument(
            "--split", choices=sorted(SPLITS), default="all", help="tune: samples 1-5, validate: 6-10 (default all)"
        )
        parser.add_argument(
            "--target",
            choices=TARGETS,
            default="messages",
            help="search recall memory, one customer's archival passages, or the whole organisation's passages",
        )
        parser.add_argument("--keep", action="store_true", help="keep the ingested organisation; prints its slug")
        parser.add_argument("--reuse", metavar="SLUG", help="ask again on an organisation that --keep left")

    def handle(self, *args: Any, **options: Any) -> None:
        ks = _parse_ks(options["k"])
        samples = _load(options["file"])
        if options["limit"] > 0:
            samples = samples[: options["limit"]]
        chosen = SPLITS[options["split"]]
        if options["reuse"]:
            organization = Organization.objects.filter(slug=options["reuse"]).first()
            if organization is None:
                raise CommandError(f"No organisation {options['reuse']!r} to reuse: run with --keep first.")
            tally = self._ask_again(organization, samples, chosen, ks, target=options["target"])
        else:
            organization = organization_create(
                name="memory_eval (kept)" if options["keep"] else "memory_eval (temporary)",
                slug=f"memory-eval-{uuid.uuid4().hex[:12]}",
            )
            try:
                tally = self._run(
                    organization,
                    samples,
                    ks,
                    quiet=options["json"],
                    chosen=chosen,
                    target=options["target"],
                    passages=options["keep"] or options["target"] != "messages",
                )
            finally:
                if not options["keep"]:
                    organization.delete()
            if options["keep"]:
                self.stderr.write(f"kept: --reuse {organization.slug}")
        report = _report(tally, ks)
        report.update(split=options["split"], target=options["target"])
        if options["json"]:
            self.stdout.write(json.dumps(report))
        else:
            self._print(report, ks)

    def _run(
        self,
        organization: Organization,
        samples: list[dict[str, Any]],
        ks: list[int],
        *,
        quiet: bool,
        chosen: range = SPLITS["all"],
        target: str = "messages",
        passages: bool = False,
    ) -> Tally:
        started = time.perf_counter()
        # A bulk load: passages are embedded in batches below, like the messages (which are not announced),
        # not one model call each as they are stored.
        passage_saved.disconnect(dispatch_uid=PASSAGE_EMBED_RECEIVER)
        try:
            ingested = [_ingest(organization, sample, passages=passages) for sample in samples]
        finally:
            passage_saved.connect(embed_saved_passage, dispatch_uid=PASSAGE_EMBED_RECEIVER)
        turns = sum(len(s.turns) for s in ingested)
        if not quiet:
            self.stderr.write(
                f"ingested {turns} turns of {len(samples)} samples in {time.perf_counter() - started:.1f}s"
            )
        started = time.perf_counter()
        for ids in _id_batches(pending_messages(organization_id=organization.pk), DEFAULT_BATCH_SIZE):
            message_embeddings_compute(message_ids=ids)
        passages_copy_message_vectors(organization=organization)
        embeddings_embed_pending(organization_id=organization.pk)  # whatever the copy did not cover
        if not quiet:
            self.stderr.write(f"embedded them in {time.perf_counter() - started:.1f}s")
        tally = Tally()
        for index, (sample, data) in enumerate(zip(ingested, samples, strict=True)):
            if index in chosen:
                _ask(sample, data["qa"], ks, tally, target=target)
        return tally

    def _ask_again(
        self, organization: Organization, samples: list[dict[str, Any]], chosen: range, ks: list[int], *, target: str
    ) -> Tally:
        tally = Tally()
        for index, data in enumerate(samples):
            if index in chosen:
                _ask(_ingested(organization, data), data["qa"], ks, tally, target=target)
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


def _ingested(organization: Organization, data: dict[str, Any]) -> Sample:
    """A sample that ``--keep`` left in ``organization``, found again by its ids."""
    customer = Customer.objects.filter(
        organization=organization, identities__source="api", identities__external_id=str(data.get("sample_id"))
    ).first()
    if customer is None:
        raise CommandError(f"Sample {data.get('sample_id')!r} is not in {organization.slug}: kept from another file?")
    sample = Sample(customer=customer)
    sample.turns = dict(TicketMessage.objects.filter(customer=customer).values_list("external_id", "pk"))
    sample.passages = {
        pk: source
        for pk, source in ArchivalPassage.objects.filter(customer=customer).values_list("pk", "source_message_id")
        if source is not None
    }
    return sample


def _ingest(organization: Organization, data: dict[str, Any], *, passages: bool = False) -> Sample:
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
                if passages:
                    _store_passage(sample, message)
    return sample


def _store_passage(sample: Sample, message: TicketMessage) -> None:
    """The turn as an archival passage of the customer, dated like the turn, pointing to its message."""
    text = f"{message.author_name}: {message.body}" if message.author_name else message.body
    passage, created = passage_insert(
        organization=sample.customer.organization,
        customer=sample.customer,
        text=text,
        provenance=Provenance(),
        source_message_id=message.pk,
    )
    if created:  # a passage is dated when it is stored; here, when its turn was said (a repeat keeps the first)
        ArchivalPassage.objects.filter(pk=passage.pk).update(created_at=message.created_at)
        sample.passages[passage.pk] = message.pk


def passages_copy_message_vectors(*, organization: Organization) -> int:
    """Give each passage the vector of the message it was made from when both embed the same text.

    The model is deterministic: embedding "<speaker>: <text>" a second time would give the same vector and
    double the cost of a LoCoMo load; the same holds for its sentences, copied with it. Returns how many passages
    got a vector this way.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE memory_archivalpassage p SET embedding = e.embedding, embedding_model = e.model, "
            "sentence_count = e.sentence_count "
            "FROM memory_messageembedding e "
            "WHERE p.organization_id = %s AND p.embedding IS NULL AND e.message_id = p.source_message_id "
            "AND e.text = p.text",
            [organization.pk],
        )
        copied = cursor.rowcount
        # Their sentences too (memory/sentences.py: a passage made from a turn has that turn's sentences).
        cursor.execute(
            "INSERT INTO memory_sentenceembedding (passage_id, position, embedding, model) "
            "SELECT p.id, s.position, s.embedding, s.model FROM memory_archivalpassage p "
            "JOIN memory_sentenceembedding s ON s.message_id = p.source_message_id AND s.model = p.embedding_model "
            "WHERE p.organization_id = %s AND p.sentence_count > 0 "
            "AND NOT EXISTS (SELECT 1 FROM memory_sentenceembedding o WHERE o.passage_id = p.id)",
            [organization.pk],
        )
        return copied


def _ask(sample: Sample, questions: list[dict[str, Any]], ks: list[int], tally: Tally, *, target: str) -> None:
    for item in questions:
        category = str(item.get("category"))
        if category not in SCORED_CATEGORIES:
            continue
        evidence = {sample.turns[e] for e in item.get("evidence", []) if e in sample.turns}
        if not evidence:  # no evidence, or only malformed ids: nothing to recall
            continue
        started = time.perf_counter()
        found = _search(sample, str(item["question"]), max(ks), target=target)
        tally.latencies_ms.append((time.perf_counter() - started) * 1000)
        for k in ks:
            tally.add(category, k, len(evidence & set(found[:k])) / len(evidence))


def _search(sample: Sample, query: str, k: int, *, target: str) -> list[int]:
    """The ids of the messages found for ``query``, best first (for passages: the messages they came from)."""
    if target == "archival":
        customer = sample.customer
        page = passage_search(organization=customer.organization, customer=customer, query=query, page_size=k)
        return [sample.passages[p.pk] for p in page.results if p.pk in sample.passages]
    if target == "organisation":
        page = passage_search(organization=sample.customer.organization, customer=None, query=query, page_size=k)
        return [p.source_message_id for p in page.results if p.source_message_id is not None]
    return [message.pk for message in message_search(customer=sample.customer, query=query, page_size=k).results]


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
