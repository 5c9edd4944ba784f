"""Language-model backends: the ``openai`` SDK (OpenAI or any compatible server) and the offline model.

Both speak one protocol: ``complete(messages, tools) -> LLMResponse`` and ``summarize(...)``. The loop
never knows which one it talks to. Which one runs is a setting: ``OPENAI_API_KEY`` or ``OPENAI_BASE_URL``
set selects openai; neither selects the offline model (``support_agent.offline_model``).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import openai
from django.conf import settings

from support_agent.tokens import count_tokens

logger = logging.getLogger(__name__)

# Statuses worth another try: rate limited, server trouble. Everything else (400, 401, 404...) is final.
_RETRYABLE = (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError, openai.APIConnectionError)


class LLMError(Exception):
    """The model could not be reached or refused the request, after every retry."""


@dataclass
class ToolCallRequest:
    id: str
    name: str
    arguments: str


@dataclass
class LLMResponse:
    content: str | None
    tool_calls: list[ToolCallRequest]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 1
    raw: dict[str, Any] = field(default_factory=dict)

    def as_message(self) -> dict[str, Any]:
        """The assistant message to put back into the conversation (OpenAI chat format)."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        return message


class Backend(Protocol):
    name: str

    def complete(self, *, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> LLMResponse: ...

    def summarize(self, *, instruction: str, text: str, max_tokens: int, fallback: str) -> str: ...


def extractive_summary(*, previous: str, lines: list[str], max_tokens: int) -> str:
    """A deterministic recursive summary: earlier summary plus one trimmed line per message, oldest lines
    dropped first when it outgrows max_tokens (the messages themselves stay in recall memory)."""
    kept = [line for line in previous.splitlines() if line.strip()] + [line[:200] for line in lines]
    while len(kept) > 1 and count_tokens("\n".join(kept)) > max_tokens:
        kept.pop(0)
    return "\n".join(kept)


class OpenAIBackend:
    """Chat completions with tools through the openai SDK, with our own retry loop (so attempts are
    recorded and Retry-After is honoured) on 429, 5xx, timeouts and dropped connections."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None,
        model: str,
        timeout: float,
        max_retries: int,
        backoff_base: float = 0.5,
        backoff_cap: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = model
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._sleep = sleep
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url or None, timeout=timeout, max_retries=0)

    def complete(self, *, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> LLMResponse:
        kwargs: dict[str, Any] = {"model": self.name, "messages": messages}
        if tools:
            kwargs["tools"] = tools
            kwargs["tool_choice"] = "auto"
        completion, attempts = self._with_retries(lambda: self._client.chat.completions.create(**kwargs))
        return _parse_completion(completion, attempts)

    def summarize(self, *, instruction: str, text: str, max_tokens: int, fallback: str) -> str:
        messages = [
            {"role": "system", "content": f"{instruction} Answer in at most {max_tokens} tokens, plain text."},
            {"role": "user", "content": text},
        ]
        try:
            response = self.complete(messages=messages, tools=[])
        except LLMError as exc:
            # A summary is worth having even when the model is down: fall back to the extractive one.
            logger.warning("summary by %s failed (%s); using the extractive summary", self.name, exc)
            return fallback
        return (response.content or "").strip() or fallback

    def _with_retries(self, call: Callable[[], Any]) -> tuple[Any, int]:
        for attempt in range(self.max_retries + 1):
            try:
                return call(), attempt + 1
            except _RETRYABLE as exc:
                if attempt == self.max_retries:
                    raise LLMError(f"{_describe(exc)} (gave up after {attempt + 1} attempts)") from exc
                delay = self._delay(attempt, exc)
                logger.info("model call failed (%s); retry %d in %.2fs", _describe(exc), attempt + 1, delay)
                self._sleep(delay)
            except openai.OpenAIError as exc:
                raise LLMError(_describe(exc)) from exc
        raise LLMError("unreachable: the retry loop always returns or raises")

    def _delay(self, attempt: int, exc: Exception) -> float:
        """Retry-After when the server sends one; otherwise exponential backoff with jitter."""
        response = getattr(exc, "response", None)
        header = response.headers.get("retry-after") if response is not None else None
        if header is not None:
            try:
                return min(max(float(header), 0.0), self.backoff_cap)
            except ValueError:
                pass
        return min(self.backoff_base * 2**attempt, self.backoff_cap) * random.uniform(0.5, 1.0)


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    return f"{type(exc).__name__}{f' {status}' if status else ''}: {exc}"


def _parse_completion(completion: Any, attempts: int) -> LLMResponse:
    if not getattr(completion, "choices", None):
        raise LLMError("The model answered with no choices.")
    message = completion.choices[0].message
    calls = []
    for index, call in enumerate(message.tool_calls or []):
        function = getattr(call, "function", None)
        calls.append(
            ToolCallRequest(
                id=call.id or f"call_{index}",
                name=getattr(function, "name", "") or "",
                arguments=getattr(function, "arguments", "") or "",
            )
        )
    usage = completion.usage
    return LLMResponse(
        content=message.content,
        tool_calls=calls,
        prompt_tokens=(usage.prompt_tokens or 0) if usage else 0,
        completion_tokens=(usage.completion_tokens or 0) if usage else 0,
        attempts=attempts,
        raw=completion.model_dump(mode="json"),
    )


def backend_configured() -> str:
    """Which backend the settings select: "openai" or "offline"."""
    return "openai" if settings.OPENAI_API_KEY or settings.OPENAI_BASE_URL else "offline"


def backend_get() -> Backend:
    if backend_configured() == "offline":
        from support_agent.offline_model import OfflineBackend

        return OfflineBackend()
    return OpenAIBackend(
        # Local OpenAI-compatible servers usually ignore the key, but the SDK insists on one.
        api_key=settings.OPENAI_API_KEY or "not-needed",
        base_url=settings.OPENAI_BASE_URL or None,
        model=settings.SUPPORTMEM_MODEL,
        timeout=float(settings.SUPPORTMEM_LLM_TIMEOUT),
        max_retries=settings.SUPPORTMEM_LLM_MAX_RETRIES,
    )
