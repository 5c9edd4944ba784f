"""Load at start what the first request would otherwise load: the embedding model, the token encoding and every
view's module; then keep the garbage collector off what was loaded.

Without it the first widget reply of a fresh server waits for torch and the model weights (seconds to tens of
seconds on a loaded machine). gunicorn calls ``service_warm_up`` and then ``heap_freeze`` in each worker after
it boots.
"""

from __future__ import annotations

import gc
import logging
import time

logger = logging.getLogger(__name__)


def service_warm_up() -> float:
    """Embed one query and count one text's tokens; returns the seconds it took. Never fails the caller: a
    server whose embedder is misconfigured still serves (searches fall back to full text)."""
    from django.urls import get_resolver

    from memory.embeddings import embedder_get
    from support_agent.tokens import count_tokens

    started = time.perf_counter()
    _ = get_resolver().url_patterns  # imports every view's module (the admin, the API, the MCP server's models)
    try:
        count_tokens("warm up")
        embedder_get().embed(["warm up"])
    except Exception as exc:
        logger.warning("warm-up failed (%s); the first request will load the models", exc)
    return time.perf_counter() - started


def heap_freeze() -> int:
    """Move every object alive now out of the collector's sight; returns how many.

    A warmed-up worker holds a few million objects (Django, the apps, the tokenizer's vocabulary, the OpenAI and
    MCP models). Python's oldest-generation collection walks them all, and on a 2-core EPYC that stopped a worker
    for 210-280 ms twice in 30 s of 300 webhook deliveries a second: every request in flight waited. Frozen,
    those objects are never scanned again (they live as long as the worker anyway); what requests allocate is
    collected as before."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
