"""search_benchmark loads synthetic passages, rebuilds the HNSW index, times searches and cleans up."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from memory.models import ArchivalPassage
from tests.memory.fake_embedder import use_fake
from tickets.models import Organization


def _pages_per_customer(text: str) -> list[int]:
    listed = re.search(r"heap pages holding one customer's passages: ([\d, ]+)", text)
    assert listed is not None
    return [int(value) for value in listed.group(1).split(",")]


@pytest.mark.django_db(transaction=True)  # CREATE INDEX cannot follow COPY's pending FK checks in one transaction
def test_search_benchmark_small_run_reports_latency_and_leaves_nothing(settings):
    use_fake(settings)
    out = io.StringIO()
    call_command("search_benchmark", "--sizes", "300", "--per-customer", "100", "--queries", "3", "--yes", stdout=out)
    text = out.getvalue()
    assert "300 passages, 3 customers (customer order, random vectors)" in text
    assert "HNSW build" in text and "rows/s" in text
    assert "one customer, first pass: p50" in text and "organisation-wide: p50" in text
    assert "organisation-wide, the newer half (start=): p50" in text
    assert "(warm): p50" in text
    # 100 passages of about 1.9 kB fill 25 pages (one more when a page freed by an earlier test is reused).
    assert all(25 <= pages <= 26 for pages in _pages_per_customer(text))
    assert "query embedded first (baseline)" in text and "ratio p50" in text
    assert not ArchivalPassage.objects.exists() and not Organization.objects.exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_indexes WHERE indexname = 'passage_embedding_hnsw'")
        assert cursor.fetchone() is not None  # the index is back


@pytest.mark.django_db(transaction=True)
def test_search_benchmark_can_load_the_texts_embeddings(settings):
    fake = use_fake(settings)
    out = io.StringIO()
    args = ["--sizes", "200", "--per-customer", "100", "--queries", "2", "--vectors", "model", "--yes", "--keep"]
    call_command("search_benchmark", *args, stdout=out)
    assert "200 passages, 2 customers (customer order, their texts' embeddings)" in out.getvalue()
    assert "of which embedding" in out.getvalue()
    passage = ArchivalPassage.objects.order_by("pk").first()
    assert passage is not None and passage.text in [text for call in fake.calls for text in call]
    assert list(passage.embedding) == pytest.approx(fake.embed([passage.text])[0], abs=1e-6)


def test_search_benchmark_refuses_without_consent_and_bad_sizes(db):
    with pytest.raises(CommandError, match="--yes"):
        call_command("search_benchmark", "--sizes", "10")
    with pytest.raises(CommandError, match="comma-separated"):
        call_command("search_benchmark", "--sizes", "ten", "--yes")


@pytest.mark.django_db(transaction=True)
def test_search_benchmark_keeps_a_load_and_measures_it_again(settings):
    use_fake(settings)
    out = io.StringIO()
    args = ["--sizes", "200", "--per-customer", "100", "--queries", "2"]
    call_command("search_benchmark", *args, "--yes", "--keep", stdout=out)
    slug = Organization.objects.get().slug
    assert f"--reuse {slug}" in out.getvalue()
    assert ArchivalPassage.objects.count() == 200

    again = io.StringIO()
    call_command("search_benchmark", "--reuse", slug, "--queries", "2", "--warm-up", "3", stdout=again)
    assert f"about 200 passages, 2 customers (reused {slug})" in again.getvalue()
    assert "one customer, first pass: p50" in again.getvalue()
    assert "organisation-wide (after 3 untimed): p50" in again.getvalue()
    with pytest.raises(CommandError, match="--warm-up"):
        call_command("search_benchmark", "--reuse", slug, "--warm-up", "-1")
    assert ArchivalPassage.objects.count() == 200  # nothing loaded, nothing dropped

    with pytest.raises(CommandError, match="No benchmark organisation"):
        call_command("search_benchmark", "--reuse", "acme")
    # Built under another embedder: its vectors would not be searched, so the figures would be full text's alone.
    model = ArchivalPassage.objects.values_list("embedding_model", flat=True).first()
    ArchivalPassage.objects.update(embedding_model="an-earlier-model")
    with pytest.raises(CommandError, match="built with the embedder 'an-earlier-model'"):
        call_command("search_benchmark", "--reuse", slug, "--queries", "2")
    ArchivalPassage.objects.update(embedding_model=model)

    # From cold: the server restarts, its files leave the OS page cache, and the heap is read only by the searches.
    cold = io.StringIO()
    call_command("search_benchmark", "--reuse", slug, "--queries", "2", "--cold", stdout=cold)
    text = cold.getvalue()
    assert "PostgreSQL restarted" in text and "dropped from the OS page cache" in text
    assert "disk now: 200 random 8 kB reads of the passage table, p50 " in text
    assert "one customer, cold (first read of each customer): p50" in text and "after the cold pass: heap" in text
    assert ArchivalPassage.objects.count() == 200
    with pytest.raises(CommandError, match="--reuse"):
        call_command("search_benchmark", "--cold")


@pytest.mark.django_db(transaction=True)
def test_search_benchmark_interleaved_load_spreads_each_customer_until_clustered(settings):
    use_fake(settings)
    out = io.StringIO()
    args = ["--sizes", "400", "--per-customer", "100", "--queries", "2", "--yes"]
    call_command("search_benchmark", *args, "--interleaved", stdout=out)
    assert "(interleaved, random vectors)" in out.getvalue() and min(_pages_per_customer(out.getvalue())) >= 99
    clustered = io.StringIO()
    call_command("search_benchmark", *args, "--interleaved", "--cluster", stdout=clustered)
    assert "CLUSTER" in clustered.getvalue() and max(_pages_per_customer(clustered.getvalue())) <= 26
