"""Load at start what the first request would otherwise load: the embedding model and the token encoding.

Without it the first widget reply of a fresh server waits for torch and the model weights (seconds to tens of
seconds on a loaded machine). gunicorn calls ``service_warm_up`` in each worker after it boots.
"""

from __future__ import annotations

import logging
import time

logger = logging.getLogger(__name__)


def service_warm_up() -> float:
    """Embed one query and count one text's tokens; returns the seconds it took. Never fails the caller: a
    server whose embedder is misconfigured still serves (searches fall back to full text)."""
    from memory.embeddings import embedder_get
    from support_agent.tokens import count_tokens

    started = time.perf_counter()
    try:
        count_tokens("warm up")
        embedder_get().embed(["warm up"])
    except Exception as exc:
        logger.warning("warm-up failed (%s); the first request will load the models", exc)
    return time.perf_counter() - started
