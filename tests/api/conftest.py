"""Fixtures for the API tests: a real API key per organisation and clients that send it."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from tests.conftest import Actors
from tickets.auth import api_key_create


@pytest.fixture
def api_key(actors: Actors) -> str:
    return api_key_create(organization=actors.org, name="tests")[1]


@pytest.fixture
def other_api_key(actors: Actors) -> str:
    return api_key_create(organization=actors.other_org, name="tests")[1]


@pytest.fixture
def api(api_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
    return client


@pytest.fixture
def other_api(other_api_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {other_api_key}")
    return client


@pytest.fixture(autouse=True)
def _fresh_throttle_counters() -> None:
    """Throttle counters live in the cache; each test starts with none, whatever ran before it."""
    cache.clear()
