"""Scoring for ``agent_eval``: what counts as a remembered fact and as an answered question (docs/agent-eval.md).

Everything here is pure: texts in, numbers out. The command replays the conversations through the real agent
and hands this module what ended up in memory and what the agent replied.

Matching works on tokens: the text is NFKC-normalised and case-folded, and every run of letters or digits is a
token ("Whitfield-Okafor" is two tokens, "B-20931" is "b", "20931"). Accents are kept.

- An expected fact is *recalled* when one stored fact contains all its tokens.
- A stored fact is *correct* when it contains all the tokens of one expected fact, adds at most
  ``max(3, len(expected))`` tokens that are neither label words (``LABEL_WORDS``: "name", "works", "order",
  "the"...) nor tokens of the customer's other expected facts, and does not end in a dangling connective
  ("and", "but", "now"...: a fact cut in the middle of a clause).
- A question is *answered* when the expected answer's tokens appear, in order and contiguous, in the reply.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words that only frame a fact ("Name: X", "The customer works at X", "Prefers X"): never counted as extra.
LABEL_WORDS = _wordset(
    """
    a an the is are was be been of to in on at for by via with from as and or my their his her its our your
    s customer customers client user name names called named full first last surname
    works work working worked employer employed company job
    uses use using used owns own has have product products device devices runs running
    prefers prefer preferred preference preferences likes wants would rather contact contacted contacting
    please reach reached
    order orders number no id ids account reference ref
    email e mail address addresses phone mobile cell telephone tel shipping billing delivery postal
    plan subscription tier subscribed
    lives live living based located location city country timezone time zone
    language speaks speak
    current currently now new updated changed
    note noted fact
    """
)
# A fact that ends with one of these was cut in the middle of a clause.
DANGLING = _wordset("and but or so because which who that now then also too with at for to from of the a")


def tokens(text: str) -> list[str]:
    normalised = unicodedata.normalize("NFKC", text).casefold()
    return re.findall(r"[^\W_]+", normalised)


@dataclass(frozen=True)
class ExpectedFact:
    text: str
    tier: str = ""  # "core", "archival" or "" (either)

    @property
    def tokens(self) -> list[str]:
        return tokens(self.text)


@dataclass(frozen=True)
class StoredFact:
    text: str
    tier: str  # "core" or "archival"
    where: str  # block label or passage id, for the report


def recalls(stored: StoredFact, expected: ExpectedFact) -> bool:
    """The stored fact holds every token of the expected one (in the expected fact's tier, when it has one)."""
    if expected.tier and expected.tier != stored.tier:
        return False
    have = set(tokens(stored.text))
    return bool(expected.tokens) and all(token in have for token in expected.tokens)


def is_correct(stored: StoredFact, expected_facts: Sequence[ExpectedFact]) -> bool:
    """Precision's test: the stored fact states one expected fact, with little else and nothing cut off."""
    words = tokens(stored.text)
    # Cut off: its last word is a connective. The last word, not token: "55120-A" ends a code, not a clause.
    last = tokens(stored.text.split()[-1]) if stored.text.split() else []
    if not words or (len(last) == 1 and last[0] in DANGLING):
        return False
    everyone = {token for fact in expected_facts for token in fact.tokens}
    for fact in expected_facts:
        if not all(token in words for token in fact.tokens) or not fact.tokens:
            continue
        own = set(fact.tokens)
        extra = [w for w in words if w not in own and w not in LABEL_WORDS and w not in everyone]
        if len(extra) <= max(3, len(own)):
            return True
    return False


def answers(reply: str, expected: str) -> bool:
    """The expected answer's tokens appear in the reply, in order and next to each other."""
    want = tokens(expected)
    have = tokens(reply)
    if not want:
        return False
    return any(have[i : i + len(want)] == want for i in range(len(have) - len(want) + 1))


@dataclass
class FactScore:
    stored: int = 0
    correct: int = 0
    expected: int = 0
    recalled: int = 0
    wrong: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)

    def add(self, other: FactScore) -> None:
        self.stored += other.stored
        self.correct += other.correct
        self.expected += other.expected
        self.recalled += other.recalled
        self.wrong += other.wrong
        self.missed += other.missed

    @property
    def precision(self) -> float | None:
        return self.correct / self.stored if self.stored else None

    @property
    def recall(self) -> float | None:
        return self.recalled / self.expected if self.expected else None


def score_facts(stored: Iterable[StoredFact], expected: Sequence[ExpectedFact], *, tier: str = "") -> FactScore:
    """Precision and recall of one customer's memory. ``tier`` ("core", "archival") limits precision to the facts
    stored in that tier and recall to the expected facts marked with it."""
    kept = [fact for fact in stored if not tier or fact.tier == tier]
    wanted = [fact for fact in expected if not tier or fact.tier == tier]
    score = FactScore(stored=len(kept), expected=len(wanted))
    for fact in kept:
        if is_correct(fact, expected):
            score.correct += 1
        else:
            score.wrong.append(f"{fact.where}: {fact.text}")
    for want in wanted:
        if any(recalls(fact, want) for fact in kept):
            score.recalled += 1
        else:
            score.missed.append(want.text)
    return score
