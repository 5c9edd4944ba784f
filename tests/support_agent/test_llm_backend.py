"""The openai backend: retries with backoff on 429/5xx, clean failure when retries run out, usage recorded."""

from __future__ import annotations

import pytest

from support_agent.llm import LLMError, OpenAIBackend, backend_configured
from support_agent.services import agent_run
from tests.support_agent.fake_openai import Error, tool_calls
from tests.support_agent.helpers import customer_says


def test_429_then_success(actors, blocks, fake_llm):
    fake_llm.script = [
        Error(429, {"Retry-After": "0"}, "rate limited"),
        tool_calls(("send_message", {"message": "Back after a pause.", "request_heartbeat": False})),
    ]
    run = agent_run(customer=actors.customer, trigger="manual", message=customer_says(actors.customer, "Hi"))
    run.refresh_from_db()
    assert (run.status, run.stop_reason, run.reply) == ("completed", "end_turn", "Back after a pause.")
    assert len(fake_llm.requests) == 2
    step = run.steps.get()
    assert step.response["attempts"] == 2 and step.prompt_tokens == 100


def test_retries_run_out_and_the_run_fails_cleanly(actors, blocks, fake_llm):
    fake_llm.default = Error(503, {"Retry-After": "0"}, "overloaded")
    events = []
    run = agent_run(
        customer=actors.customer, trigger="manual", message=customer_says(actors.customer, "Hi"), on_event=events.append
    )
    run.refresh_from_db()
    assert (run.status, run.stop_reason) == ("failed", "llm_error")
    assert "503" in run.error and "3 attempts" in run.error  # SUPPORTMEM_LLM_MAX_RETRIES=2 in the fixture
    assert run.finished_at is not None and run.steps.count() == 0 and run.reply == ""
    assert events[-1] == {"type": "run_finished", "run_id": run.pk, "status": "failed", "stop_reason": "llm_error"}


def test_client_errors_are_not_retried(fake_llm):
    fake_llm.default = Error(401, message="bad key")
    backend = OpenAIBackend(api_key="x", base_url=fake_llm.base_url, model="m", timeout=5, max_retries=3)
    with pytest.raises(LLMError, match="401"):
        backend.complete(
            messages=[{"role": "user", "content": "hi"}],
            tools=[
                {"type": "function", "function": {"name": "noop", "parameters": {"type": "object", "properties": {}}}}
            ],
        )
    assert len(fake_llm.requests) == 1


def test_backoff_grows_without_retry_after(fake_llm):
    fake_llm.default = Error(500)
    waits: list[float] = []
    backend = OpenAIBackend(
        api_key="x",
        base_url=fake_llm.base_url,
        model="m",
        timeout=5,
        max_retries=3,
        backoff_base=1.0,
        sleep=waits.append,
    )
    with pytest.raises(LLMError, match="4 attempts"):
        backend.complete(
            messages=[{"role": "user", "content": "hi"}],
            tools=[
                {"type": "function", "function": {"name": "noop", "parameters": {"type": "object", "properties": {}}}}
            ],
        )
    assert len(waits) == 3
    assert 0.5 <= waits[0] <= 1.0 and 2.0 <= waits[2] <= 4.0


def test_backend_choice_follows_settings(settings):
    settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL = "", ""
    assert backend_configured() == "offline"
    settings.OPENAI_BASE_URL = "http://127.0.0.1:1/v1"
    assert backend_configured() == "openai"
    settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY = "", "sk-test"
    assert backend_configured() == "openai"
