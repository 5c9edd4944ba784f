"""memory_eval: LoCoMo-format file in, turn-level evidence recall@k and latency out, throwaway organisation gone."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from memory.models import SentenceEmbedding
from tests.memory import fake_embedder
from tests.memory.fake_embedder import use_fake
from tickets.models import Customer, Organization, TicketMessage

SAMPLE = {
    "sample_id": "conv-test",
    "conversation": {
        "speaker_a": "Ana",
        "speaker_b": "Ben",
        "session_1_date_time": "1:56 pm on 8 May, 2023",
        "session_1": [
            {"speaker": "Ana", "dia_id": "D1:1", "text": "My router keeps dropping the connection."},
            {"speaker": "Ben", "dia_id": "D1:2", "text": "Did you try a reboot?", "blip_caption": "a photo of a modem"},
            {"speaker": "Ana", "dia_id": "D1:3", "text": "Yes, twice. I also adopted a puppy named Rex!"},
        ],
        "session_2_date_time": "10:00 am on 9 June, 2023",
        "session_2": [
            {"speaker": "Ben", "dia_id": "D2:1", "text": "How is Rex doing?"},
            {"speaker": "Ana", "dia_id": "D2:2", "text": "Great, he loves the beach near Lisbon."},
        ],
        "session_3_date_time": "10:00 am on 9 July, 2023",
    },
    "qa": [
        {"question": "What is the name of Ana's puppy?", "answer": "Rex", "evidence": ["D1:3"], "category": 4},
        {"question": "Where does Rex like to go?", "answer": "beach", "evidence": ["D2:2", "D9:9"], "category": 1},
        {"question": "When was the router problem?", "answer": "May 2023", "evidence": ["D1:1"], "category": 2},
        {"question": "Is Ana a dog person?", "answer": "yes", "evidence": [], "category": 3},
        {"question": "What is Ana's cat called?", "adversarial_answer": "Tom", "evidence": ["D1:3"], "category": 5},
    ],
}


@pytest.fixture(autouse=True)
def _puppy_concept(monkeypatch):
    """The word "puppy" a concept of the fake embedder: the puppy question and its answer then agree by meaning too, as
    they would with a real model (texts without a concept get unrelated random vectors, whose ranking is noise)."""
    monkeypatch.setitem(fake_embedder.CONCEPTS, "puppy", 7)


@pytest.fixture
def locomo_file(tmp_path):
    path = tmp_path / "locomo.json"
    path.write_text(json.dumps([SAMPLE]))
    return path


def test_memory_eval_reports_recall_by_category_and_latency_as_json(db, settings, locomo_file):
    use_fake(settings)
    out = io.StringIO()
    call_command("memory_eval", str(locomo_file), "--k", "1,5", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert set(report) >= {"recall", "by_category", "questions", "search_ms"}
    # Category 5 is not scored and the question without evidence is skipped: 3 questions remain.
    assert report["questions"] == 3
    assert set(report["by_category"]) == {"1", "2", "4"}
    assert report["recall"]["5"] == 1.0  # five turns in all: every evidence turn is in the top 5
    assert report["by_category"]["4"]["1"] == 1.0  # "puppy" is only in D1:3
    assert 0.0 <= report["recall"]["1"] <= 1.0
    assert report["search_ms"]["p50"] > 0 and report["search_ms"]["p95"] >= report["search_ms"]["p50"]
    # The throwaway organisation, its customer and messages are gone.
    assert not Organization.objects.filter(slug__startswith="memory-eval").exists()
    assert not Customer.objects.exists() and not TicketMessage.objects.exists()


def test_memory_eval_ingests_through_the_normal_path_with_session_dates(db, settings, locomo_file, monkeypatch):
    use_fake(settings)
    from memory.management.commands import memory_eval

    seen = {}
    monkeypatch.setattr(memory_eval.Command, "_run", _run_then_snapshot(memory_eval.Command._run, seen))
    call_command("memory_eval", str(locomo_file), stdout=io.StringIO(), stderr=io.StringIO())
    assert seen["snapshot"][0] == ("D1:1", "2023-05-08", "Ana")
    assert seen["snapshot"][-1] == ("D2:2", "2023-06-09", "Ana")
    assert seen["snapshot_caption"] == "Did you try a reboot? [shares a photo of a modem]"


def _run_then_snapshot(run, seen):
    def wrapped(self, organization, samples, ks, **options):
        tally = run(self, organization, samples, ks, **options)
        messages = TicketMessage.objects.filter(organization=organization).order_by("created_at")
        seen["snapshot"] = [(m.external_id, m.created_at.date().isoformat(), m.author_name) for m in messages]
        seen["snapshot_caption"] = messages.get(external_id="D1:2").body
        return tally

    return wrapped


def test_memory_eval_text_output_and_bad_input(db, settings, locomo_file, tmp_path):
    use_fake(settings)
    out = io.StringIO()
    call_command("memory_eval", str(locomo_file), "--limit", "1", stdout=out, stderr=io.StringIO())
    assert "recall  @5:" in out.getvalue() and "search ms" in out.getvalue()
    with pytest.raises(CommandError, match="--k"):
        call_command("memory_eval", str(locomo_file), "--k", "0,5")
    with pytest.raises(CommandError, match="--k"):
        call_command("memory_eval", str(locomo_file), "--k", "five")
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("memory_eval", str(tmp_path / "missing.json"))
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"not": "a list"}')
    with pytest.raises(CommandError, match="not a LoCoMo file"):
        call_command("memory_eval", str(wrong))


def _eval(locomo_file, *args):
    out = io.StringIO()
    call_command("memory_eval", str(locomo_file), "--json", *args, stdout=out, stderr=io.StringIO())
    return json.loads(out.getvalue())


def _two_conversation_file(tmp_path, count=6):
    """``count`` copies of SAMPLE with their own ids; only the sixth onwards ask about the beach."""
    samples = []
    for index in range(count):
        sample = json.loads(json.dumps(SAMPLE))
        sample["sample_id"] = f"conv-{index + 1}"
        if index < 5:
            sample["qa"] = [q for q in sample["qa"] if q["category"] != 1]
        samples.append(sample)
    path = tmp_path / "six.json"
    path.write_text(json.dumps(samples))
    return path


def test_memory_eval_splits_tune_from_validate(db, settings, tmp_path):
    use_fake(settings)
    path = _two_conversation_file(tmp_path)
    tune = _eval(path, "--split", "tune")
    validate = _eval(path, "--split", "validate")
    everything = _eval(path)
    assert tune["split"] == "tune" and validate["split"] == "validate" and everything["split"] == "all"
    assert tune["questions"] == 5 * 2  # conversations 1-5: the router and puppy questions
    assert validate["questions"] == 3  # conversation 6 alone, with its multi-hop question
    assert everything["questions"] == tune["questions"] + validate["questions"]
    assert "1" not in tune["by_category"] and "1" in validate["by_category"]


def _passage_searches(monkeypatch):
    """What memory_eval's passage searches were asked (their keyword arguments) and found (their pages' passages)."""
    from memory import selectors
    from memory.management.commands import memory_eval

    searched = []
    original = selectors.passage_search

    def spy(**kwargs):
        page = original(**kwargs)
        searched.append((kwargs, list(page.results)))
        return page

    monkeypatch.setattr(memory_eval, "passage_search", spy)
    return searched


def test_memory_eval_searches_archival_passages_made_from_the_turns(db, settings, locomo_file, monkeypatch):
    use_fake(settings)
    searches = _passage_searches(monkeypatch)
    report = _eval(locomo_file, "--target", "archival", "--k", "1,5")
    searched = [[p.text for p in found] for _, found in searches]
    assert report["target"] == "archival" and report["questions"] == 3
    assert report["by_category"]["4"]["1"] == 1.0  # the passage "Ana: ... a puppy named Rex!" maps to D1:3
    assert report["recall"]["5"] == 1.0
    assert "Ana: Yes, twice. I also adopted a puppy named Rex!" in searched[0]
    assert not Organization.objects.filter(slug__startswith="memory-eval").exists()


def test_memory_eval_searches_the_whole_organisations_passages(db, settings, tmp_path, monkeypatch):
    use_fake(settings)
    searches = _passage_searches(monkeypatch)
    path = _two_conversation_file(tmp_path, count=2)
    report = _eval(path, "--target", "organisation", "--k", "1,5")
    searched = [(asked["customer"], [p.customer_id for p in found]) for asked, found in searches]
    assert report["target"] == "organisation" and report["questions"] == 2 * 2
    assert all(customer is None for customer, _ in searched)  # asked of the organisation, not of a customer
    assert any(len(set(owners)) == 2 for _, owners in searched)  # both conversations' passages compete
    # The two conversations' puppy turns are the same text: the page keeps one of them (duplicates are dropped), so
    # one conversation's question finds its own evidence and the other's finds only the other conversation's turn.
    assert report["by_category"]["4"]["5"] == 0.5
    assert not Organization.objects.filter(slug__startswith="memory-eval").exists()


def test_memory_eval_keeps_and_reuses_the_ingested_organisation(db, settings, locomo_file):
    use_fake(settings)
    err = io.StringIO()
    out = io.StringIO()
    call_command("memory_eval", str(locomo_file), "--json", "--keep", stdout=out, stderr=err)
    first = json.loads(out.getvalue())
    slug = err.getvalue().strip().split()[-1]
    organization = Organization.objects.get(slug=slug)
    messages = TicketMessage.objects.filter(organization=organization).count()
    assert messages == 5 and organization.passages.count() == 5  # both targets kept
    assert not organization.passages.filter(embedding__isnull=True).exists()  # passages embedded in the batch
    # A turn's sentences are embedded with it and copied to its passage, as its vector is (docs/recall.md, step 7):
    # "Did you try a reboot? [shares a photo of a modem]" and "Yes, twice. I also adopted a puppy named Rex!".
    of_messages = SentenceEmbedding.objects.filter(message__organization=organization)
    of_passages = SentenceEmbedding.objects.filter(passage__organization=organization)
    assert of_messages.count() == of_passages.count() == 4
    assert sorted(organization.passages.values_list("sentence_count", flat=True)) == [0, 0, 0, 2, 2]
    assert sorted(str(list(row.embedding)) for row in of_messages) == sorted(
        str(list(row.embedding)) for row in of_passages
    )
    again = _eval(locomo_file, "--reuse", slug)
    archival = _eval(locomo_file, "--reuse", slug, "--target", "archival")
    assert again["recall"] == first["recall"] and again["by_category"] == first["by_category"]
    assert archival["questions"] == first["questions"]
    assert TicketMessage.objects.filter(organization=organization).count() == messages  # nothing ingested again
    with pytest.raises(CommandError, match="No organisation"):
        call_command("memory_eval", str(locomo_file), "--reuse", "no-such-org")
    with pytest.raises(CommandError, match="--split"):
        call_command("memory_eval", str(locomo_file), "--split", "half")
