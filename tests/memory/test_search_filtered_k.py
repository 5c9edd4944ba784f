"""A filtered search still returns k results when k exist, though HNSW filters after it searches."""

from __future__ import annotations

import random

from memory.models import EMBEDDING_DIMENSIONS, ArchivalPassage, content_hash
from memory.selectors import passage_search
from tests.memory.fake_embedder import use_fake


def _random_unit(rng):
    vector = [rng.gauss(0, 1) for _ in range(EMBEDDING_DIMENSIONS)]
    norm = sum(x * x for x in vector) ** 0.5
    return [x / norm for x in vector]


def test_selective_filters_still_return_k_results(actors, settings):
    fake = use_fake(settings)
    rng = random.Random(3)
    rows = []
    for i in range(1500):
        rare = i % 100 == 0  # 15 rows carry the tag, spread through the vector space
        rows.append(
            ArchivalPassage(
                organization=actors.org,
                customer=actors.customer if rare else actors.other_customer,
                text=f"synthetic passage {i}",
                text_hash=content_hash(f"synthetic passage {i}"),
                tags=["rare"] if rare else ["common"],
                embedding=_random_unit(rng),
                embedding_model=fake.name,
            )
        )
    ArchivalPassage.objects.bulk_create(rows)

    org_wide = passage_search(organization=actors.org, customer=None, query="unrelated words", tags=["rare"])
    assert len(org_wide.results) == 10
    assert all(p.tags == ["rare"] for p in org_wide.results)

    one_customer = passage_search(organization=actors.org, customer=actors.customer, query="unrelated words")
    assert len(one_customer.results) == 10
    assert {p.customer_id for p in one_customer.results} == {actors.customer.pk}

    everything = passage_search(organization=actors.org, customer=None, query="unrelated", page_size=100)
    assert len(everything.results) == 100
