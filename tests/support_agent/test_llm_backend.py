"""The openai backend: the SDK's own retries on 429/5xx (attempts recorded on the step), clean failure when
retries run out, client errors final, a completion cut at the token limit its own stop reason."""

from __future__ import annotations

import pytest

from support_agent.llm import LLMError, OpenAIBackend, backend_configured
from support_agent.services import agent_run
from tests.support_agent.fake_openai import Error, cut, tool_calls
from tests.support_agent.helpers import customer_says

# retry-after-ms keeps the SDK's waits short (it honours the header the way OpenAI sends it).
QUICK = {"retry-after-ms": "10"}
NOOP_TOOL = [{"type": "function", "function": {"name": "noop", "parameters": {"type": "object", "properties": {}}}}]


def test_sdk_retries_a_429_and_a_500_and_the_step_records_the_attempts(actors, blocks, fake_llm):
    fake_llm.script = [
        Error(429, QUICK, "rate limited"),
        Error(500, QUICK, "server trouble"),
        tool_calls(("send_message", {"message": "Back after a pause.", "request_heartbeat": False})),
    ]
    run = agent_run(customer=actors.customer, trigger="manual", message=customer_says(actors.customer, "Hi"))
    run.refresh_from_db()
    assert (run.status, run.stop_reason, run.reply) == ("completed", "end_turn", "Back after a pause.")
    assert fake_llm.retry_counts == [0, 1, 2]  # the SDK itself retried, numbering its tries
    step = run.steps.get()
    assert step.response["attempts"] == 3 and step.prompt_tokens == 100


def test_retries_run_out_and_the_run_fails_cleanly(actors, blocks, fake_llm):
    fake_llm.default = Error(503, QUICK, "overloaded")
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
    with pytest.raises(LLMError, match=r"401.*after 1 attempt\)"):
        backend.complete(messages=[{"role": "user", "content": "hi"}], tools=NOOP_TOOL)
    assert len(fake_llm.requests) == 1


def test_the_server_can_forbid_a_retry(fake_llm):
    fake_llm.default = Error(503, {"x-should-retry": "false"}, "do not come back")
    backend = OpenAIBackend(api_key="x", base_url=fake_llm.base_url, model="m", timeout=5, max_retries=3)
    with pytest.raises(LLMError, match="503"):
        backend.complete(messages=[{"role": "user", "content": "hi"}], tools=NOOP_TOOL)
    assert fake_llm.retry_counts == [0]


def test_max_retries_comes_from_the_setting(fake_llm, settings):
    from support_agent.llm import backend_get

    settings.SUPPORTMEM_LLM_MAX_RETRIES = 1
    fake_llm.default = Error(500, QUICK)
    with pytest.raises(LLMError, match="2 attempts"):
        backend_get().complete(messages=[{"role": "user", "content": "hi"}], tools=NOOP_TOOL)
    assert fake_llm.retry_counts == [0, 1]


def test_a_completion_cut_at_the_token_limit_stops_with_its_own_reason(actors, blocks, fake_llm):
    fake_llm.script = [cut("Your refund of 89 USD was iss")]
    run = agent_run(customer=actors.customer, trigger="manual", message=customer_says(actors.customer, "Refund?"))
    run.refresh_from_db()
    assert (run.status, run.stop_reason) == ("completed", "length")
    assert run.reply == ""  # the cut text is not delivered as if it were a whole answer
    assert run.steps.get().response["choices"][0]["finish_reason"] == "length"


def test_backend_choice_follows_settings(settings):
    settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL = "", ""
    assert backend_configured() == "offline"
    settings.OPENAI_BASE_URL = "http://127.0.0.1:1/v1"
    assert backend_configured() == "openai"
    settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY = "", "sk-test"
    assert backend_configured() == "openai"
