"""The offline model: a deterministic stand-in for an LLM, used when no OPENAI_API_KEY/OPENAI_BASE_URL is set.

It speaks the same tool protocol as a real model, so the whole pipeline (loop, tools, memory edits,
traces, replies to the helpdesk) runs on a machine with no network. Its behaviour, step by step:

Customer message (the new event is "New message from the customer on ticket #N ...")
  1. First step: ``conversation_search`` and ``archival_memory_search`` for the message's keywords; one
     memory edit per explicit fact the customer states and core memory does not hold yet:
     "my name is X" / "I work at X" / "I use X" -> ``core_memory_append`` to ``customer``;
     "I prefer X" -> ``preferences``; "my order is X" -> ``archival_memory_insert`` (tag ``order``);
     a ticket not yet listed in ``open_issues`` -> one line there. All with request_heartbeat.
  2. Next step: ``send_message`` with a template that starts with "(offline model)" and cites the
     messages and passages the searches found and the facts it recorded. Then it stops.
Consolidation (the new event is "Ticket #N ... was solved")
  removes the ticket's line from ``open_issues`` with ``core_memory_replace`` if there is one, then stops.

Everything it writes is labelled "offline model" (replies, run.model_name, agent message author).
"""

from __future__ import annotations

import json
import re
from typing import Any

from support_agent.llm import LLMResponse, ToolCallRequest
from support_agent.tokens import count_message_tokens, count_tokens

OFFLINE_NAME = "offline model"

_MESSAGE_EVENT = re.compile(
    r'^New message from the customer(?: on ticket #(?P<ticket>\d+) "(?P<subject>.*?)")? \([^)]*\):\n(?P<body>.*)$',
    re.DOTALL,
)
_SOLVED_EVENT = re.compile(r'^Ticket #(?P<ticket>\d+) "(?P<subject>.*?)" was solved')
_STOPWORDS = frozenset(
    re.findall(
        r"\S+",
        "the and for you your with this that have has had was were are not but can could would should our out "
        "from they them their there what when where which who how why about into just also any all its it's i'm "
        "please thanks thank hello dear again still since will does did been being very more some than then",
    )
)
# A fact ends at punctuation or at a conjunction that starts another clause ("I use X and my order is Y").
_END = r"(?=\s+(?:and|but|so|because|which)\b|[.!?\n,;]|$)"
_FACTS: list[tuple[re.Pattern[str], str, str]] = [
    # (pattern, where to record it, template); group 1 is the fact.
    (re.compile(r"\bmy name is ([A-Za-z][\w'-]*(?: [A-Z][\w'-]*){0,2})", re.I), "customer", "Name: {}"),
    (re.compile(rf"\bI (?:work at|work for) ([^.!?\n,;]{{2,80}}?){_END}", re.I), "customer", "Works at {}"),
    (re.compile(rf"\bI (?:use|am using|'m using) ([^.!?\n,;]{{2,80}}?){_END}", re.I), "customer", "Uses {}"),
    (
        re.compile(rf"\bI (?:prefer|would prefer|'d prefer) ([^.!?\n;]{{2,120}}?){_END}", re.I),
        "preferences",
        "Prefers {}",
    ),
    (re.compile(r"\bmy order (?:number |id |no\.? )?is #?([A-Za-z0-9][\w-]{1,40})", re.I), "archival", "Order: {}"),
]


def keywords(text: str, limit: int = 5) -> list[str]:
    """The longest distinct content words, in a stable order: the offline model's search terms."""
    words = {w for w in re.findall(r"[a-z0-9][a-z0-9'-]{2,}", text.lower()) if w not in _STOPWORDS}
    return sorted(words, key=lambda w: (-len(w), w))[:limit]


def _block_text(system: str, label: str) -> str:
    match = re.search(rf"<{label} [^>]*>\n(.*?)\n</{label}>", system, re.DOTALL)
    return match.group(1) if match else ""


def _call(step: int, index: int, name: str, *, request_heartbeat: bool = True, **arguments: Any) -> ToolCallRequest:
    arguments["request_heartbeat"] = request_heartbeat
    return ToolCallRequest(id=f"offline-{step}-{index}", name=name, arguments=json.dumps(arguments))


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
        if solved:
            response = self._consolidate(solved, system, step) if not exchange else _stop("Core memory is current.")
        elif not exchange:
            response = self._first_step(event, system, available)
        elif "send_message" in available:
            response = self._reply(event, exchange, step)
        else:
            response = _stop("Nothing more to do.")
        response.prompt_tokens = sum(count_message_tokens(m) for m in messages)
        response.completion_tokens = count_tokens(response.content or "") + sum(
            count_tokens(c.arguments) for c in response.tool_calls
        )
        return response

    def summarize(self, *, instruction: str, text: str, max_tokens: int, fallback: str) -> str:
        return fallback

    def _first_step(self, event: str, system: str, available: set[str]) -> LLMResponse:
        match = _MESSAGE_EVENT.match(event)
        body = match.group("body") if match else event
        query = " or ".join(keywords(body))
        calls = [
            _call(0, 0, "conversation_search", query=query, request_heartbeat=True),
            _call(0, 1, "archival_memory_search", query=query, request_heartbeat=True),
        ]
        known = system.casefold()
        for pattern, target, template in _FACTS:
            for found in pattern.finditer(body):
                fact = template.format(found.group(1).strip())
                if fact.casefold() in known:
                    continue
                if target == "archival":
                    calls.append(_call(0, len(calls), "archival_memory_insert", content=fact, tags=["order"]))
                else:
                    calls.append(_call(0, len(calls), "core_memory_append", label=target, content=fact))
                known += fact.casefold()
        ticket = match.group("ticket") if match else None
        if ticket and not re.search(rf"#{ticket}\b", _block_text(system, "open_issues")):
            line = f"#{ticket} {match.group('subject')}: {' '.join(body.split())[:120]}"  # type: ignore[union-attr]
            calls.append(_call(0, len(calls), "core_memory_append", label="open_issues", content=line))
        calls = [c for c in calls if c.name in available]
        return LLMResponse(content=None, tool_calls=calls)

    def _consolidate(self, solved: re.Match[str], system: str, step: int) -> LLMResponse:
        lines = _block_text(system, "open_issues").split("\n")
        marker = f"#{solved.group('ticket')}"
        hits = [i for i, line in enumerate(lines) if re.search(rf"{marker}\b", line)]
        if not hits:
            return _stop(f"(offline model) Nothing in open_issues refers to ticket {marker}.")
        index = hits[0]
        # Take the line with one neighbouring newline so no blank line is left behind.
        old = lines[index] + "\n" if index + 1 < len(lines) else ("\n" if index else "") + lines[index]
        arguments = {"label": "open_issues", "old_content": old, "new_content": ""}
        call = _call(step, 0, "core_memory_replace", request_heartbeat=False, **arguments)
        return LLMResponse(content=None, tool_calls=[call])

    def _reply(self, event: str, exchange: list[dict[str, Any]], step: int) -> LLMResponse:
        match = _MESSAGE_EVENT.match(event)
        body = (match.group("body") if match else event).strip()
        calls = {c["id"]: c["function"] for m in exchange for c in m.get("tool_calls") or []}
        found_messages: list[str] = []
        found_notes: list[str] = []
        recorded: list[str] = []
        for message in exchange:
            if message.get("role") != "tool":
                continue
            function = calls.get(message.get("tool_call_id", ""), {})
            result = _json(message.get("content"))
            _collect(function, result, body, (found_messages, found_notes, recorded))
        text = _reply_text(found_messages, found_notes, recorded)
        call = _call(step, 0, "send_message", message=text, request_heartbeat=False)
        return LLMResponse(content=None, tool_calls=[call])


def _json(text: Any) -> dict[str, Any]:
    try:
        parsed = json.loads(str(text))
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _collect(
    function: dict[str, Any], result: dict[str, Any], body: str, found: tuple[list[str], list[str], list[str]]
) -> None:
    messages, notes, recorded = found
    name = function.get("name")
    payload = result.get("result") or {}
    if not result.get("ok"):
        return
    if name == "conversation_search":
        # The message being answered is in recall memory too: citing it back would be noise.
        rows = [row for row in payload.get("results", []) if row["text"].strip() != body[:400].strip()]
        messages.extend(f"- {row['when']} ({row['from']}): {row['text'][:160]}" for row in rows[:3])
    elif name == "archival_memory_search":
        notes.extend(f"- {row['text'][:200]}" for row in payload.get("results", [])[:3])
    elif name in {"core_memory_append", "archival_memory_insert"}:
        content = _json(function.get("arguments")).get("content", "")
        pending = name == "core_memory_append" and not payload.get("applied", True)
        recorded.append(f"- {content}" + (" (awaiting staff review)" if pending else ""))


def _reply_text(messages: list[str], notes: list[str], recorded: list[str]) -> str:
    parts = [
        "(offline model) Thanks for your message. I am the offline stand-in model: I can search your history "
        "and note what you tell me, and a teammate will follow up on the rest."
    ]
    if messages:
        parts.append("From our earlier conversations:\n" + "\n".join(messages))
    if notes:
        parts.append("From my notes:\n" + "\n".join(notes))
    if recorded:
        parts.append("I noted:\n" + "\n".join(recorded))
    if not (messages or notes or recorded):
        parts.append("I found nothing related in your history yet.")
    return "\n\n".join(parts)


def _stop(text: str) -> LLMResponse:
    return LLMResponse(content=text, tool_calls=[])
