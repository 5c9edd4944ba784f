"""agent_eval: scripted conversations replayed through the agent, scored for memory facts and answers."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from support_agent.evaluation import ExpectedFact, StoredFact, answers, is_correct, recalls, score_facts
from tickets.models import Organization

SMALL = Path(__file__).parent / "fixtures" / "agent_eval_small.json"
REPO_SET = Path(__file__).resolve().parents[2] / "support_agent" / "evals" / "conversations.json"


def test_a_fact_is_correct_when_it_states_an_expected_fact_and_little_else():
    expected = [ExpectedFact("Tomás Ferreira"), ExpectedFact("Lisbon Ceramics")]
    assert is_correct(StoredFact("Name: Tomás Ferreira", "core", "customer"), expected)
    assert is_correct(StoredFact("The customer's name is Tomás Ferreira.", "core", "customer"), expected)
    assert is_correct(StoredFact("Tomás Ferreira works at Lisbon Ceramics", "core", "customer"), expected)
    assert not is_correct(StoredFact("Name: Tomás Ferreira and", "core", "customer"), expected)  # cut mid-clause
    assert not is_correct(StoredFact("Order: and", "archival", "passage 1"), expected)
    code = [ExpectedFact("55120-A")]  # a code that ends in "A" is not cut off
    assert is_correct(StoredFact("Account: 55120-A", "archival", "passage 2"), code)
    assert not is_correct(StoredFact("Account: 55120-A a", "archival", "passage 2"), code)
    assert not is_correct(StoredFact("Name: Tomás", "core", "customer"), expected)  # incomplete
    stale = [ExpectedFact("Dana Whitfield-Okafor")]
    assert not is_correct(StoredFact("Name: Dana Whitfield", "core", "customer"), stale)
    assert recalls(StoredFact("Name: DANA Whitfield-Okafor", "core", "customer"), stale[0])
    assert not recalls(StoredFact("Order: B-1", "core", "customer"), ExpectedFact("B-1", "archival"))


def test_scores_and_answers_are_token_based():
    stored = [StoredFact("Name: Ilse van Dijk", "core", "customer"), StoredFact("Plan: Pro", "core", "customer")]
    score = score_facts(stored, [ExpectedFact("Ilse van Dijk"), ExpectedFact("Utrecht Bikes")])
    assert (score.precision, score.recall, score.missed, score.wrong) == (
        0.5,
        0.5,
        ["Utrecht Bikes"],
        ["customer: Plan: Pro"],
    )
    assert answers("Your order is b-20931 (my notes)", "B-20931")
    assert not answers("Your order is B-2093", "B-20931")
    assert not answers("anything", "")


@pytest.mark.django_db(transaction=True)
def test_agent_eval_replays_conversations_with_the_offline_model(actors, offline):
    out = StringIO()
    call_command("agent_eval", str(SMALL), "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert (report["backend"], report["conversations"], report["questions"], report["failed_runs"]) == (
        "offline model",
        1,
        2,
        0,
    )
    assert report["facts"]["all"] == {
        "precision": 1.0,
        "recall": 1.0,
        "stored": 3,
        "correct": 3,
        "expected": 3,
        "recalled": 3,
    }
    assert report["facts"]["archival"]["recall"] == 1.0 and report["answer_share"] == 1.0
    # The throwaway organisation is gone; the test's own organisations are untouched.
    assert set(Organization.objects.values_list("slug", flat=True)) == {"acme", "globex"}


def test_agent_eval_refuses_a_bad_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"id": "x", "sessions": [{"turns": [{"robot": "hi"}]}]}]))
    with pytest.raises(CommandError, match="each turn is"):
        call_command("agent_eval", str(bad))
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("agent_eval", str(tmp_path / "missing.json"))


def test_the_repository_set_has_thirty_multi_session_conversations():
    conversations = json.loads(REPO_SET.read_text(encoding="utf-8"))["conversations"]
    assert len(conversations) >= 30
    assert sum(len(c["sessions"]) > 1 for c in conversations) >= 20
    assert all(c["questions"] and c["expected_memory"] for c in conversations)
