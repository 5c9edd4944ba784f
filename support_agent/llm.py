"""Language-model backends: the ``openai`` SDK (OpenAI or any compatible server) and the offline model.

Both speak one protocol: ``complete(messages, tools) -> LLMResponse`` and ``summarize(...)``. The loop
never knows which one it talks to. Which one runs is a setting: ``OPENAI_API_KEY`` or ``OPENAI_BASE_URL``
set selects openai; neither selects the offline model (``support_agent.offline_model``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import openai
from django.conf import settings

from support_agent.tokens import count_tokens

logger = logging.getLogger(__name__)


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
    finish_reason: str | None = None  # "length": the completion was cut at the token limit
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
    """Chat completions with tools through the openai SDK. Retries are the SDK's own (429, 408, 409, 5xx,
    timeouts, dropped connections; Retry-After, retry-after-ms and x-should-retry honoured), the same policy
    the embedder uses; the attempts a call took are read back from the SDK and recorded on the step."""

    def __init__(self, *, api_key: str, base_url: str | None, model: str, timeout: float, max_retries: int) -> None:
        self.name = model
        self.max_retries = max_retries
        self._client = openai.OpenAI(
            api_key=api_key, base_url=base_url or None, timeout=timeout, max_retries=max_retries
        )

    def complete(self, *, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> LLMResponse:
        kwargs: dict[str, Any] = {"model": self.name, "messages": messages}
        if tools:
            kwargs["tools"] = tools
            kwargs["tool_choice"] = "auto"
        try:
            raw = self._client.chat.completions.with_raw_response.create(**kwargs)
        except openai.OpenAIError as exc:
            attempts = _attempts_of_failure(exc)
            raise LLMError(f"{_describe(exc)} (gave up after {attempts} attempt{'s' * (attempts > 1)})") from exc
        return _parse_completion(raw.parse(), raw.retries_taken + 1)

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


def _attempts_of_failure(exc: Exception) -> int:
    """The SDK numbers each try in the x-stainless-retry-count request header; the last request tells how many."""
    response = getattr(exc, "response", None)
    request = response.request if response is not None else getattr(exc, "request", None)
    try:
        return int(request.headers.get("x-stainless-retry-count", "0")) + 1 if request is not None else 1
    except (ValueError, RuntimeError):
        return 1


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    return f"{type(exc).__name__}{f' {status}' if status else ''}: {exc}"


def _parse_completion(completion: Any, attempts: int) -> LLMResponse:
    if not getattr(completion, "choices", None):
        raise LLMError("The model answered with no choices.")
    choice = completion.choices[0]
    message = choice.message
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
        finish_reason=choice.finish_reason,
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
