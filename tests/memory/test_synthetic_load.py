"""Synthetic passages written with binary COPY arrive whole: owners, order, vectors, text and full text."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from django.db import connection

from memory.models import ArchivalPassage
from memory.synthetic import PassagePlan, copy_chunks, passages_copy
from tests.memory.fake_embedder import FakeEmbedder
from tickets.models import Customer, Organization

WORDS = ["refund", "router", "invoice", "password"]


def _plan(org: Organization, customers: list[Customer], *, interleaved: bool) -> PassagePlan:
    return PassagePlan(
        organization_id=org.pk,
        customer_ids=[customer.pk for customer in customers],
        size=25,
        per_customer=10,
        model="test-model",
        words=WORDS,
        seed=7,
        interleaved=interleaved,
    )


def _physical_owners() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT customer_id FROM memory_archivalpassage ORDER BY ctid")
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db
def test_rows_land_customer_by_customer_with_unit_vectors_and_searchable_text():
    org = Organization.objects.create(name="Load", slug="load")
    customers = [Customer.objects.create(organization=org, name=f"c{i}") for i in range(2)]
    passages_copy(_plan(org, customers, interleaved=False))
    # 25 rows, 10 per customer: the last customer takes the remainder, and each customer's rows are contiguous.
    first, second = customers[0].pk, customers[1].pk
    assert _physical_owners() == [first] * 10 + [second] * 15
    passages = list(ArchivalPassage.objects.order_by("created_at"))
    assert len(passages) == 25 and len({p.text_hash for p in passages}) == 25
    assert all(len(p.text_hash) == 32 and p.tags == [] and not p.staff_only for p in passages)
    assert all(p.embedding_model == "test-model" and p.change_source == "system" for p in passages)
    assert passages[3].text.endswith(" #3") and set(passages[3].text.split()[:10]) <= set(WORDS)
    norms = [float(np.linalg.norm(np.asarray(p.embedding))) for p in passages]
    assert min(norms) == pytest.approx(1.0, abs=1e-5) and max(norms) == pytest.approx(1.0, abs=1e-5)
    assert passages[0].created_at < passages[-1].created_at
    word = passages[0].text.split()[0]
    assert ArchivalPassage.objects.filter(search_vector=word).exists()  # the generated tsvector is filled


@pytest.mark.django_db
def test_interleaved_rows_alternate_between_customers():
    org = Organization.objects.create(name="Load", slug="load")
    customers = [Customer.objects.create(organization=org, name=f"c{i}") for i in range(2)]
    passages_copy(_plan(org, customers, interleaved=True))
    owners = _physical_owners()
    assert owners[:4] == [customers[0].pk, customers[1].pk] * 2 and len(owners) == 25


def test_the_stream_is_framed_and_a_bad_plan_is_refused():
    plan = PassagePlan(organization_id=1, customer_ids=[5], size=3, per_customer=10, model="m", words=WORDS)
    chunks = list(copy_chunks(plan, chunk_rows=2))
    assert chunks[0].startswith(b"PGCOPY\n\xff\r\n\x00") and chunks[-1] == b"\xff\xff" and len(chunks) == 4
    with pytest.raises(ValueError, match="positive size"):
        list(
            copy_chunks(PassagePlan(organization_id=1, customer_ids=[], size=3, per_customer=1, model="m", words=WORDS))
        )


@pytest.mark.django_db
def test_rows_can_carry_their_texts_embeddings_instead_of_random_vectors():
    org = Organization.objects.create(name="Load", slug="load")
    customers = [Customer.objects.create(organization=org, name=f"c{i}") for i in range(2)]
    fake = FakeEmbedder()
    plan = _plan(org, customers, interleaved=False)
    passages_copy(dataclasses.replace(plan, embed=fake.embed))
    passages = list(ArchivalPassage.objects.order_by("created_at"))
    assert [text for call in fake.calls for text in call] == [p.text for p in passages]  # each text once, in order
    for passage in passages:
        assert np.asarray(passage.embedding) == pytest.approx(np.asarray(fake._one(passage.text)), abs=1e-6)
    # The same texts as the random-vector plan's: the two loads differ only in their vectors.
    random_texts = [p.text for p in passages]
    ArchivalPassage.objects.all().delete()
    passages_copy(plan)
    assert [p.text for p in ArchivalPassage.objects.order_by("created_at")] == random_texts


def test_an_embedder_that_returns_the_wrong_shape_is_refused():
    plan = PassagePlan(organization_id=1, customer_ids=[5], size=3, per_customer=10, model="m", words=WORDS)
    plan = dataclasses.replace(plan, embed=lambda texts: [[1.0]])
    with pytest.raises(ValueError, match="vectors for 3 texts"):
        list(copy_chunks(plan))
