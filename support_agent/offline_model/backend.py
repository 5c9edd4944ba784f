"""The offline model's backend: the tool-calling steps for a customer message and a solved ticket."""

from __future__ import annotations

import json
import re
from typing import Any

from support_agent.llm import LLMResponse, ToolCallRequest
from support_agent.offline_model.answering import _block_lines, _block_text, _Findings, _reply_text, _stop
from support_agent.offline_model.extraction import (
    _asked_kinds,
    _label_of,
    facts_in,
    is_question,
    keywords,
    sentences,
)
from support_agent.offline_model.kinds import (
    _KIND,
    _MESSAGE_EVENT,
    _SOLVED_EVENT,
    OFFLINE_NAME,
    REPLY_PREFIX,
    Fact,
)
from support_agent.tokens import count_message_tokens, count_tokens

# ----------------------------------------------------------------------------------------------
# The backend


def _call(step: int, index: int, name: str, *, request_heartbeat: bool = True, **arguments: Any) -> ToolCallRequest:
    arguments["request_heartbeat"] = request_heartbeat
    return ToolCallRequest(id=f"offline-{step}-{index}", name=name, arguments=json.dumps(arguments))


_STAFF_MESSAGE = re.compile(r"^\[[^\]]*\] Support staff(?: \([^)]*\))? wrote to the customer: (?P<text>.*)$", re.DOTALL)


def _staff_question(history: list[dict[str, Any]]) -> str:
    """The staff message just before the customer's, when it asks something: the customer's message answers it."""
    last = history[-1] if len(history) > 1 else {}
    found = _STAFF_MESSAGE.match(str(last.get("content") or "")) if last.get("role") == "system" else None
    asks = found and (
        "?" in found.group("text")
        or re.search(r"\bplease (?:confirm|send|provide|give|share|tell)\b", found.group("text"), re.IGNORECASE)
    )
    return found.group("text") if found and asks else ""


# A reference the staff gave the customer: "For reference, your membership ID is CW-3307."
_TOLD_REFERENCE = re.compile(
    r"\byour (?:new )?(?P<label>membership|member|booking|reservation|case|claim|policy|customer|reference|ticket|"
    r"confirmation|tracking)(?: (?:id|number|no\.?|reference|ref|code))? is(?: now)?:? "
    r"#?(?P<code>(?=[\w-]*\d)(?=[\w-]*[A-Za-z_-]|\d{4})[A-Za-z0-9][\w-]{3,})\b",
    re.IGNORECASE,
)


def _staff_told(history: list[dict[str, Any]]) -> list[Fact]:
    """References in the staff message just before the customer's: the customer was told them, they are theirs."""
    last = history[-1] if len(history) > 1 else {}
    found = _STAFF_MESSAGE.match(str(last.get("content") or "")) if last.get("role") == "system" else None
    if not found:
        return []
    return [
        Fact(_KIND["reference"], f"{m.group('label').casefold()} {m.group('code').rstrip('-')}", False)
        for m in _TOLD_REFERENCE.finditer(found.group("text"))
    ]


def _body(event: str) -> tuple[str, re.Match[str] | None]:
    match = _MESSAGE_EVENT.match(event)
    return (match.group("body") if match else event).strip(), match


class OfflineBackend:
    name = OFFLINE_NAME

    def complete(self, *, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> LLMResponse:
        available = {tool["function"]["name"] for tool in tools}
        event_at = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=len(messages) - 1)
        event = str(messages[event_at].get("content") or "") if messages else ""
        exchange = messages[event_at + 1 :]
        system = str(messages[0].get("content") or "") if messages else ""
        step = sum(1 for m in exchange if m.get("role") == "assistant")
        solved = _SOLVED_EVENT.match(event)
        replied = any(c["function"]["name"] == "send_message" for m in exchange for c in m.get("tool_calls") or [])
        asked = _staff_question(messages[:event_at])
        told = _staff_told(messages[:event_at])
        if solved:
            response = self._consolidate(solved, system, step) if not exchange else _stop("Core memory is current.")
        elif not exchange:
            response = self._first_step(event, system, available, asked, told)
        elif "send_message" in available and not replied:
            response = self._reply(event, system, exchange, step, available, asked, told)
        else:
            # Nothing left to do. No text: the loop would deliver text to the customer as a second reply.
            response = LLMResponse(content=None, tool_calls=[])
        response.prompt_tokens = sum(count_message_tokens(m) for m in messages)
        response.completion_tokens = count_tokens(response.content or "") + sum(
            count_tokens(c.arguments) for c in response.tool_calls
        )
        return response

    def summarize(self, *, instruction: str, text: str, max_tokens: int, fallback: str) -> str:
        return fallback

    def _first_step(
        self,
        event: str,
        system: str,
        available: set[str],
        asked: str,
        told: list[Fact] = [],  # noqa: B006
    ) -> LLMResponse:
        body, match = _body(event)
        questions = [s for s in sentences(body) if is_question(s)]
        query = " or ".join(keywords(" ".join(questions) or body))
        calls = [
            _call(0, 0, "conversation_search", query=query),
            _call(0, 1, "archival_memory_search", query=query),
        ]
        facts = facts_in(body, asked) + told
        listed: set[str] = set()
        for kind in [f.kind for f in facts] + [k for q in questions for k in _asked_kinds(q)]:
            if kind.target == "archival" and kind.key not in listed:
                listed.add(kind.key)
                calls.append(_call(0, len(calls), "archival_memory_search", query="", tags=[kind.key]))
        for label, edits in _core_edits(facts, system).items():
            for operation, old, new in edits:
                if operation == "append":
                    calls.append(_call(0, len(calls), "core_memory_append", label=label, content=new))
                else:
                    calls.append(
                        _call(0, len(calls), "core_memory_replace", label=label, old_content=old, new_content=new)
                    )
        ticket = match.group("ticket") if match else None
        if match and ticket and not re.search(rf"#{ticket}\b", _block_text(system, "open_issues")):
            first = next((s for s in sentences(body) if not is_question(s)), body)
            line = f"#{ticket} {match.group('subject')}: {' '.join(first.split())[:120]}"
            calls.append(_call(0, len(calls), "core_memory_append", label="open_issues", content=line))
        calls = [c for c in calls if c.name in available]
        return LLMResponse(content=None, tool_calls=calls)

    def _consolidate(self, solved: re.Match[str], system: str, step: int) -> LLMResponse:
        lines = _block_text(system, "open_issues").split("\n")
        marker = f"#{solved.group('ticket')}"
        hits = [i for i, line in enumerate(lines) if re.search(rf"{marker}\b", line)]
        if not hits:
            return _stop(f"{REPLY_PREFIX} Nothing in open_issues refers to ticket {marker}.")
        index = hits[0]
        # Take the line with one neighbouring newline so no blank line is left behind.
        old = lines[index] + "\n" if index + 1 < len(lines) else ("\n" if index else "") + lines[index]
        arguments = {"label": "open_issues", "old_content": old, "new_content": ""}
        call = _call(step, 0, "core_memory_replace", request_heartbeat=False, **arguments)
        return LLMResponse(content=None, tool_calls=[call])

    def _reply(
        self,
        event: str,
        system: str,
        exchange: list[dict[str, Any]],
        step: int,
        available: set[str],
        asked: str,
        told: list[Fact] = [],  # noqa: B006
    ) -> LLMResponse:
        body, _ = _body(event)
        found = _Findings.read(exchange)
        calls: list[ToolCallRequest] = []
        noted = list(found.noted)
        for fact in facts_in(body, asked) + told:
            if fact.kind.target != "archival":
                continue
            current = found.passages_of(fact.kind.key)
            if fact.kind.key == "reference":  # a new e-ticket number does not replace the booking code
                current = [
                    p for p in current if _label_of(p["text"].removeprefix(fact.prefix)) == _label_of(fact.value)
                ]
            if any(p["text"].casefold() == fact.line.casefold() for p in current):
                continue
            replace = current[0] if current and (fact.kind.single or fact.changed) else None
            if replace is not None and "archival_memory_supersede" in available:
                calls.append(
                    _call(
                        step,
                        len(calls),
                        "archival_memory_supersede",
                        request_heartbeat=False,
                        passage_id=replace["passage_id"],
                        content=fact.line,
                        tags=[fact.kind.key],
                    )
                )
                noted.append(f"{fact.line} (replacing {replace['text'].removeprefix(fact.kind.prefix)})")
            elif "archival_memory_insert" in available:
                calls.append(
                    _call(
                        step,
                        len(calls),
                        "archival_memory_insert",
                        request_heartbeat=False,
                        content=fact.line,
                        tags=[fact.kind.key],
                    )
                )
                noted.append(fact.line)
        text = _reply_text(body, system, found, noted)
        calls.append(_call(step, len(calls), "send_message", message=text, request_heartbeat=False))
        return LLMResponse(content=None, tool_calls=calls)


def _core_edits(facts: list[Fact], system: str) -> dict[str, list[tuple[str, str, str]]]:
    """Per block: (operation, old line, new line) for the core facts that are not in memory yet."""
    edits: dict[str, list[tuple[str, str, str]]] = {}
    lines = {label: _block_lines(system, label) for label in ("customer", "preferences")}
    for fact in facts:
        if fact.kind.target == "archival":
            continue
        block = lines[fact.kind.target]
        names = [line.removeprefix("Name: ") for line in block if line.startswith("Name: ")]
        if fact.kind.key == "surname" and names:
            # "surname is Gallagher": the given names on file with the new surname
            given = names[-1].split()[:-1] or names[-1].split()
            fact = Fact(_KIND["name"], " ".join([*given, fact.value]), True)
        if fact.kind.key == "name" and names and not fact.changed:
            # "it's Edith again" is Edith Parrish, still: a shorter form of the name on file changes nothing
            on_file = {word.casefold() for word in names[-1].split()}
            if all(word.casefold() in on_file for word in fact.value.split()):
                continue
        if any(line.casefold() == fact.line.casefold() for line in block):
            continue
        same_kind = [line for line in block if line.startswith(fact.prefix)]
        if same_kind and (fact.kind.single or fact.changed):
            old = same_kind[-1]
            edits.setdefault(fact.kind.target, []).append(("replace", old, fact.line))
            block[block.index(old)] = fact.line
        else:
            edits.setdefault(fact.kind.target, []).append(("append", "", fact.line))
            block.append(fact.line)
    return edits
