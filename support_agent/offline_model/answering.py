"""The offline model's answers: the evidence read back from tool results, scored against each question, and the
reply that quotes it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from support_agent.llm import LLMResponse
from support_agent.offline_model.extraction import (
    _asked_kinds,
    _form_kinds,
    _shares_stem,
    _stem,
    _terms,
    is_question,
    sentences,
)
from support_agent.offline_model.kinds import (
    _BLOCK_DESCRIPTIONS,
    _KIND,
    _RESOLUTION_WORDS,
    KINDS,
    REPLY_PREFIX,
    Kind,
    _wordset,
)


def _block_text(system: str, label: str) -> str:
    match = re.search(rf"<{label} [^>]*>\n(.*?)\n</{label}>", system, re.DOTALL)
    return match.group(1) if match else ""


def _block_lines(system: str, label: str) -> list[str]:
    """The block's lines, without its description (what the block is for, not a fact)."""
    lines = [line.strip() for line in _block_text(system, label).splitlines() if line.strip()]
    return [line for line in lines if line not in _BLOCK_DESCRIPTIONS]


# ----------------------------------------------------------------------------------------------
# Reading the tool results and answering


_ON_FILE = "what I have on file"


@dataclass
class _Evidence:
    text: str
    source: str  # "2026-03-02, ticket #12, staff" / "core memory" / "note of 2026-03-02"
    kind: str = ""  # the fact kind of a stored fact line
    staff: bool = False  # an answer from support staff, or a solved ticket's resolution
    order: int = 0  # newer evidence has a higher order
    context: str = ""  # for a ticket's resolution: the whole summary (what problem it resolved)


@dataclass
class _Findings:
    passages: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    noted: list[str]

    @classmethod
    def read(cls, exchange: list[dict[str, Any]]) -> _Findings:
        calls = {c["id"]: c["function"] for m in exchange for c in m.get("tool_calls") or []}
        found = cls([], [], [])
        for message in exchange:
            if message.get("role") != "tool":
                continue
            function = calls.get(message.get("tool_call_id", ""), {})
            result = _json(message.get("content"))
            payload = result.get("result") or {}
            name = function.get("name")
            if not result.get("ok"):
                continue
            if name == "archival_memory_search":
                found.passages += [p for p in payload.get("results", []) if p not in found.passages]
            elif name == "conversation_search":
                found.messages += [m for m in payload.get("results", []) if m not in found.messages]
            elif name in {"core_memory_append", "core_memory_replace"}:
                arguments = _json(function.get("arguments"))
                if arguments.get("label") == "open_issues":
                    continue
                content = arguments.get("content") or arguments.get("new_content") or ""
                pending = not payload.get("applied", True)
                found.noted.append(content + (" (awaiting staff review)" if pending else ""))
        return found

    def passages_of(self, key: str) -> list[dict[str, Any]]:
        """Current passages of one fact kind, newest first."""
        rows = [p for p in self.passages if key in (p.get("tags") or [])]
        return sorted(rows, key=lambda p: (p.get("stored", ""), p.get("passage_id", 0)), reverse=True)


def _evidence(system: str, found: _Findings, body: str) -> list[_Evidence]:
    items: list[_Evidence] = []
    for label in ("customer", "preferences"):
        for line in _block_lines(system, label):
            kind = next((k.key for k in KINDS if k.prefix and line.startswith(k.prefix)), "")
            items.append(_Evidence(line, _ON_FILE, kind, order=10**9))
    for passage in found.passages:
        tags = passage.get("tags") or []
        kind = next((k.key for k in KINDS if k.key in tags and passage["text"].startswith(k.prefix)), "")
        date = str(passage.get("stored", ""))[:10]
        ticket = next((t.removeprefix("ticket-") for t in tags if re.fullmatch(r"ticket-\d+", t)), None)
        source = f"{date}, summary of ticket #{ticket}" if ticket else f"{date}, my notes"
        for sentence in _passage_sentences(passage["text"]):
            staff = sentence.startswith("Resolution:")
            context = passage["text"] if staff else ""
            items.append(_Evidence(sentence, source, kind, staff, passage.get("passage_id", 0), context))
    echo = " ".join(body.split())
    for row in found.messages:
        role = row.get("from")
        # Never the agent's own replies (they are not evidence), nor the message being answered.
        if role not in ("customer", "staff") or " ".join(str(row["text"]).split()) == echo:
            continue
        date = str(row.get("when", ""))[:10]
        where = f", ticket #{row['ticket']}" if row.get("ticket") else ""
        source = f"{date}{where}, {'support team' if role == 'staff' else 'you wrote'}"
        for sentence in sentences(str(row["text"])):
            if role == "customer" and is_question(sentence):
                continue
            items.append(_Evidence(sentence, source, staff=role == "staff", order=row.get("message_id", 0)))
    return items


def _passage_sentences(text: str) -> list[str]:
    """A passage's sentences; a ticket summary's "Resolution: ..." stays one piece, since it is the answer."""
    head, _, resolution = text.partition(" Resolution: ")
    parts = sentences(head)
    if resolution:
        parts.append(f"Resolution: {resolution.strip()}")
    return parts


# The words a question asks for a kind with, and words that ask without saying which one ("how many", "number").
_ASKING_WORDS = frozenset(
    _stem(word)
    for word in {w for kind in KINDS for w in kind.asked_by}
    | _wordset("number no id code many much often long kind type sort exactly usual way details detail file record")
)
_REFERENCE_LABELS = frozenset(_stem(w) for w in _KIND["reference"].asked_by) - {"reference", "code"}


def _score(question: str, item: _Evidence, asked: list[Kind], elsewhere: frozenset[str] = frozenset()) -> float:
    wanted = _terms(question)
    fix_asked = bool(wanted & _RESOLUTION_WORDS) or bool(re.search(r"\bwhy\b", question, re.IGNORECASE))
    # Asked what fixed something, a resolution counts the words of the problem it resolved too.
    have = _terms(item.text) | (_terms(item.context) if fix_asked else set())
    score = float(sum(1 for term in wanted if term in have or _shares_stem(term, have)))
    if item.kind and any(kind.key == item.kind for kind in asked):
        # A stored fact of the kind asked about ranks first, unless the question says which one it means, this is
        # not it and other evidence is: "the replacement order number" is not the order on file, "which card did
        # you block?" not the new card, "my claim number" not the policy reference. A kind asked by the question's
        # form ("Where do invoices get sent?") is not narrowed by its nouns.
        specific = {t for t in wanted - _ASKING_WORDS if not (t in have or _shares_stem(t, have)) and t in elsewhere}
        labels = wanted & _REFERENCE_LABELS
        narrowed = specific or (item.kind == "reference" and labels and not labels & have)
        by_form = any(kind.key == item.kind for kind in _form_kinds(question))
        score += 0.5 if narrowed and not by_form else 3
    if fix_asked and item.staff:
        score += 1.5
    return score


def _answer(question: str, items: list[_Evidence], used: set[str]) -> list[_Evidence]:
    """The one to three pieces of evidence that best answer a question, best first; none when nothing fits."""
    asked = _asked_kinds(question)
    wanted = _terms(question)
    # One shared word is enough for a short question ("Which error did I get?"), two for a longer one; a stored
    # fact of the kind asked about ranks first.
    need = 1.0 if len(wanted) <= 2 else 2.0
    # Words of the question that a staff message or another stored fact holds: "the replacement order is A-99907",
    # "Dog: Bolt". (Not the customer's own older words: "We pay for 25 licenses" is what the stored "Seats: 35
    # licenses" replaced.)
    current = [item for item in items if item.staff or item.kind or item.source == _ON_FILE]
    elsewhere = frozenset(t for item in current for t in _terms(item.text) & wanted)
    scored = [(_score(question, item, asked, elsewhere), item.order, item) for item in items if item.text not in used]
    enough = [row for row in scored if row[0] >= need]
    if not enough and need > 1:
        # Nothing shares two words ("What's the size limit for uploads?" / "the limit is 10 MB per file"): the
        # newest staff answer that shares one, alone.
        staff = sorted((row for row in scored if row[0] >= 1 and row[2].staff), key=lambda row: row[1], reverse=True)
        return [staff[0][2]] if staff else []
    scored = sorted(enough, key=lambda row: (row[0], row[1]), reverse=True)
    if not scored:
        return []
    best = scored[0][0]
    picked: list[_Evidence] = []
    for score, _, item in scored:
        if score < best * 0.75 or len(picked) == 3:
            break
        if item.text not in [p.text for p in picked]:
            picked.append(item)
    return picked


def _reply_text(body: str, system: str, found: _Findings, noted: list[str]) -> str:
    questions = [s for s in sentences(body) if is_question(s)]
    items = _evidence(system, found, body)
    parts: list[str] = []
    used: set[str] = set()
    for question in questions[:3]:
        picked = _answer(question, items, used)
        quoted = question if len(question) <= 90 else question[:87] + "..."
        if not picked:
            parts.append(f"You asked: \u201c{quoted}\u201d I found nothing about that in your history.")
            continue
        used.update(item.text for item in picked)
        lines = "\n".join(f"- {item.text} ({item.source})" for item in picked)
        parts.append(f"You asked: \u201c{quoted}\u201d Here is what I found:\n{lines}")
    if noted:
        parts.append("I noted: " + "; ".join(noted) + ".")
    if not questions:
        statement = " ".join(s for s in sentences(body) if not is_question(s))
        related = _answer(statement, [i for i in items if i.staff], used) if statement else []
        if related:
            parts.append("This may help, from earlier:\n" + "\n".join(f"- {i.text} ({i.source})" for i in related))
        if not noted and not related:
            parts.append("I found nothing related in your history; a teammate will follow up.")
    return f"{REPLY_PREFIX} " + "\n\n".join(parts)


def _json(text: Any) -> dict[str, Any]:
    try:
        parsed = json.loads(str(text))
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _stop(text: str) -> LLMResponse:
    return LLMResponse(content=text, tool_calls=[])
