"""Local embedders side by side in one process: sentences per second in batches, and one query's latency.

Both backends are loaded first (and the int8 model converted, if the data folder has none yet), then the
rounds alternate between them so that both see the same machine. Texts are support-like sentences of 3 to 40
words drawn from a fixed vocabulary (seeded); queries are 4 words, each new.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from memory.embeddings import Embedder, embedder_get
from tickets.benchmarking import percentile

SENTENCES = (
    "my card was charged twice for the annual plan and I want a refund please the router keeps dropping wifi "
    "since the firmware update yesterday can you call me back in the morning I prefer email over phone the "
    "parcel tracking says delivered but nothing arrived invoice pdf export fails with an error after login"
)
VOCABULARY = SENTENCES.split(" ")


class Command(BaseCommand):
    help = "Compare local embedders in one process: sentences/s batched, one-query p50/p95, and their ratios."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--new", default="local", help="backend measured (SUPPORTMEM_EMBEDDINGS key)")
        parser.add_argument("--baseline", default="local-torch", help="backend it is compared with")
        parser.add_argument("--sentences", type=int, default=512, help="sentences per batched round")
        parser.add_argument("--queries", type=int, default=200, help="one-text queries per backend")
        parser.add_argument("--rounds", type=int, default=3, help="batched rounds per backend (alternating)")

    def handle(self, *args: Any, **options: Any) -> None:
        if min(options["sentences"], options["queries"], options["rounds"]) < 1:
            raise CommandError("--sentences, --queries and --rounds must be positive")
        keys = [options["new"], options["baseline"]]
        started = time.perf_counter()
        embedders = {key: embedder_get(key) for key in keys}
        self.stdout.write(f"loaded {', '.join(keys)} in {time.perf_counter() - started:.1f}s")
        rng = random.Random(13)
        for embedder in embedders.values():
            embedder.embed(["warm up", "warm up the batch path"])

        throughput: dict[str, list[float]] = {key: [] for key in keys}
        for _ in range(options["rounds"]):
            texts = [" ".join(rng.choices(VOCABULARY, k=rng.randint(3, 40))) for _ in range(options["sentences"])]
            for key in keys:
                started = time.perf_counter()
                embedders[key].embed(texts)
                throughput[key].append(len(texts) / (time.perf_counter() - started))

        latency: dict[str, list[float]] = {key: [] for key in keys}
        for _ in range(options["queries"]):
            query = " ".join(rng.sample(VOCABULARY, 4))
            for key in keys:
                started = time.perf_counter()
                embedders[key].embed([query])
                latency[key].append((time.perf_counter() - started) * 1000)

        for key in keys:
            self._line(key, embedders[key], throughput[key], latency[key])
        new, old = keys
        gain = statistics.median(throughput[new]) / statistics.median(throughput[old])
        self.stdout.write(
            f"ratio {new} / {old}: throughput {gain:.2f}x, "
            f"one-query p50 {percentile(latency[old], 0.5) / percentile(latency[new], 0.5):.2f}x faster, "
            f"p95 {percentile(latency[old], 0.95) / percentile(latency[new], 0.95):.2f}x faster"
        )

    def _line(self, key: str, embedder: Embedder, throughput: list[float], latency: list[float]) -> None:
        self.stdout.write(
            f"{key} ({embedder.name}): {statistics.median(throughput):.0f} sentences/s batched (median of "
            f"{len(throughput)} rounds; min {min(throughput):.0f}, max {max(throughput):.0f}); one query p50 "
            f"{percentile(latency, 0.5):.2f} ms, p95 {percentile(latency, 0.95):.2f} ms"
        )
