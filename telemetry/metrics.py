"""Prometheus metrics recorded by the service (names and meaning: docs/operations.md).

Under gunicorn and Celery, PROMETHEUS_MULTIPROC_DIR makes every process write its samples to files there,
and /metrics adds them up, so any worker answers the same totals. It must be set before this module is
imported (support_agent/gunicorn_conf.py and `make run` do).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

WEBHOOK_EVENTS = Counter(
    "supportmem_webhook_events",
    "Webhook events by helpdesk kind and status: received or ignored at intake, then processed, failed or dead.",
    ["kind", "status"],
)
WEBHOOK_LAG = Histogram(
    "supportmem_webhook_lag_seconds",
    "Seconds from a webhook event's receipt to the end of its processing.",
    ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)
OUTBOUND_DELIVERIES = Counter(
    "supportmem_outbound_deliveries",
    "Outbound helpdesk replies by delivery attempt outcome (sent, retry, failed, dead, skipped).",
    ["status"],
)
AGENT_RUNS = Counter(
    "supportmem_agent_runs",
    "Finished agent runs by trigger, status and stop reason.",
    ["trigger", "status", "stop_reason"],
)
AGENT_RUN_SECONDS = Histogram(
    "supportmem_agent_run_seconds", "Wall time of an agent run, lock wait excluded.", ["trigger"], buckets=_LATENCY
)
AGENT_STEP_SECONDS = Histogram(
    "supportmem_agent_step_seconds", "Model call latency of one agent step (retries included).", buckets=_LATENCY
)
LLM_TOKENS = Counter("supportmem_llm_tokens", "Tokens the model billed, by model and kind.", ["model", "kind"])
SEARCH_SECONDS = Histogram(
    "supportmem_search_seconds", "Memory search latency by kind (messages, passages).", ["kind"], buckets=_LATENCY
)
