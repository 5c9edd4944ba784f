"""Helpers for tests of the learned ranking's features: the candidates a search scored, and plain cosine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from memory import selectors


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def pool_of(monkeypatch: Any, search: Callable[[], Any]) -> dict[int, Any]:
    """The candidates the learned score was given by ``search()``."""
    seen: dict[int, Any] = {}
    scores = selectors._learned_scores

    def capture(pool, facts, *, query, **options):
        seen.update(pool)
        return scores(pool, facts, query=query, **options)

    monkeypatch.setattr(selectors, "_learned_scores", capture)
    search()
    return seen
