"""Agent test fixtures: the scripted fake OpenAI server, with the settings pointing the openai backend at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from memory.services import blocks_ensure
from tests.support_agent.fake_openai import FakeOpenAI


@pytest.fixture
def fake_llm(settings) -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    settings.OPENAI_API_KEY = "test-key"
    settings.OPENAI_BASE_URL = server.base_url
    settings.SUPPORTMEM_MODEL = "fake-model"
    settings.SUPPORTMEM_LLM_TIMEOUT = 10
    settings.SUPPORTMEM_LLM_MAX_RETRIES = 2
    yield server
    server.stop()


@pytest.fixture
def offline(settings) -> None:
    settings.OPENAI_API_KEY = ""
    settings.OPENAI_BASE_URL = ""


@pytest.fixture
def blocks(actors):
    """The customer's core memory blocks by label (the defaults, created on demand)."""
    return {block.label: block for block in blocks_ensure(customer=actors.customer)}
