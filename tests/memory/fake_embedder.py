"""A small deterministic embedder for tests: no model, no network.

Words listed in CONCEPTS map to a shared dimension (so synonyms embed alike); other words are ignored, and a
text with no concept words gets a pseudo-random direction of its own (unrelated to every query).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence

from memory.embeddings import embedder_register
from memory.models import EMBEDDING_DIMENSIONS

CONCEPTS = {
    "refund": 1,
    "reimbursement": 1,
    "money": 1,
    "duplicate": 2,
    "double": 2,
    "twice": 2,
    "charge": 3,
    "billed": 3,
    "invoice": 3,
    "router": 4,
    "modem": 4,
    "wifi": 4,
    "printer": 5,
    "scanner": 5,
}


class FakeEmbedder:
    def __init__(self, name: str = "test/fake-concepts") -> None:
        self.name = name
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [self._one(text) for text in texts]

    def _one(self, text: str) -> list[float]:
        vector = [0.0] * EMBEDDING_DIMENSIONS
        for word in re.findall(r"[a-z]+", text.lower()):
            if word in CONCEPTS:
                vector[CONCEPTS[word]] += 1.0
        if not any(vector):
            rng = random.Random(hashlib.sha256(text.encode()).hexdigest())
            vector = [rng.gauss(0, 1) for _ in range(EMBEDDING_DIMENSIONS)]
            vector[1:6] = [0.0] * 5  # unrelated to every concept
        norm = sum(x * x for x in vector) ** 0.5
        return [x / norm for x in vector]


def use_fake(settings, key: str = "fake", name: str = "test/fake-concepts") -> FakeEmbedder:
    """Register a FakeEmbedder under ``key`` and make it the configured backend."""
    fake = FakeEmbedder(name)
    embedder_register(key, lambda: fake)
    settings.SUPPORTMEM_EMBEDDINGS = key
    return fake
