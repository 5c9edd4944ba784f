"""Log context: the ids of what a line is about (request, organisation, customer, webhook event, agent run,
outbound delivery), carried in a context variable and written on every line by ``JsonFormatter``.

A request binds its id in middleware, intake binds the event, the agent binds the run; Celery tasks carry the
context of the code that queued them (``support_agent.celery.ContextTask``), so a webhook's event id is on
the lines of the run it started and of the reply delivery that run queued.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

FIELDS = ("request_id", "organization", "customer", "event_id", "run_id", "delivery_id")

_context: ContextVar[dict[str, Any]] = ContextVar("supportmem_log_context", default={})  # noqa: B039 (never mutated)


# A proxy's X-Request-ID is kept when it looks like an id; anything else gets a fresh one.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id_for(given: str) -> str:
    """The id a request's log lines and its X-Request-ID answer carry: the proxy's, or a fresh one."""
    return given if _REQUEST_ID.match(given) else uuid.uuid4().hex


def log_context() -> dict[str, Any]:
    """The ids bound here, for a task about to be queued."""
    return dict(_context.get())


def _merged(ids: dict[str, Any]) -> dict[str, Any]:
    return {**_context.get(), **{key: value for key, value in ids.items() if key in FIELDS and value is not None}}


def log_bind(**ids: Any) -> None:
    """Add ids for the rest of the current scope (a request, a task)."""
    _context.set(_merged(ids))


def log_enter(ids: dict[str, Any]) -> Token[dict[str, Any]]:
    """Open a scope with these ids (a request, a task); close it with ``log_exit``."""
    return _context.set(_merged(ids))


def log_clear() -> Token[dict[str, Any]]:
    """Start from no ids (a test, or anything that must not inherit its caller's); undo with log_exit."""
    return _context.set({})


def log_exit(token: Token[dict[str, Any]]) -> None:
    _context.reset(token)


@contextmanager
def log_scope(**ids: Any) -> Iterator[None]:
    token = log_enter(ids)
    try:
        yield
    finally:
        log_exit(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the bound ids, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_context.get())
        for key in FIELDS:  # ids passed explicitly with extra={...} win over the bound ones
            if key in record.__dict__:
                line[key] = record.__dict__[key]
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)
