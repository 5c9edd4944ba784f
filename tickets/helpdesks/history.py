"""Reading a helpdesk's history: what each vendor's reader returns, and the one HTTP client they all use.

A reader (a class in the vendor's module, named by ``Helpdesk.history_reader``) lists the helpdesk's tickets
page by page from a cursor and completes each into the same ``NormalisedEvent`` its webhook parser returns;
``tickets.imports`` stores them.

Vendors differ in URLs and shapes, not in how a polite client behaves: wait as long as a 429's ``Retry-After``
says (or until a rate-limit reset header's time when the remaining budget is spent), retry 5xx answers and
dropped connections with exponential backoff, and turn rejected credentials into one clear error at once
(retrying a revoked token only earns a lockout).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx

from tickets.helpdesks.base import NormalisedEvent

logger = logging.getLogger(__name__)

# Headers vendors use to say how much of the rate budget is left, and when it refills (seconds or epoch).
_REMAINING = ("x-rate-limit-remaining", "x-ratelimit-remaining", "ratelimit-remaining", "x-ratelimit-remaining-minute")
_RESET = ("x-rate-limit-reset", "x-ratelimit-reset", "ratelimit-reset", "x-ratelimit-retry-after")


class ImportSourceError(RuntimeError):
    """The helpdesk cannot be read (after retries, or an answer we cannot use). The import stops, resumable."""


class ImportAuthError(ImportSourceError):
    """The helpdesk rejected the credentials: nothing to retry until someone fixes them."""


class ItemError(Exception):
    """One ticket (or file line) that cannot be imported; the rest go on. ``where`` names it for the log."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


@dataclass
class HistoryPage:
    """One page of a source's ticket list. ``items`` are cheap stubs; ``HistoryReader.ticket`` completes each
    (fetching its messages). ``next_cursor`` reads the following page; ``done`` says there is none."""

    items: list[Any]
    next_cursor: str
    done: bool
    total: int | None = None


class HistoryReader(Protocol):
    """What a helpdesk module implements to read its history (the NDJSON file reader too)."""

    def pages(self, *, cursor: str, since: datetime | None) -> Iterator[HistoryPage]:
        """Pages from ``cursor`` ("" is the beginning), tickets updated at or after ``since``."""
        ...

    def ticket(self, item: Any) -> NormalisedEvent:
        """The whole ticket with its messages; raises ItemError for one that cannot be imported."""
        ...

    def item_key(self, item: Any) -> tuple[str, datetime | None]:
        """A stub's name for error messages and its last update, for the --until filter."""
        ...

    def close(self) -> None: ...


@dataclass
class HttpStats:
    """What a client did; counted under a lock, since an import reads on several threads at once."""

    requests: int = 0
    retries: int = 0
    waited_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, *, requests: int = 0, retries: int = 0, waited: float = 0.0) -> None:
        with self.lock:
            self.requests += requests
            self.retries += retries
            self.waited_seconds += waited


@dataclass
class HistoryClient:
    """A JSON client for reads (GETs, and the POSTs some vendors search with) with the retry policy above.
    ``auth`` returns the headers of each request, so a reader whose token expires mid-import (OAuth) can refresh
    it: on a 401 ``on_unauthorized`` is asked once whether it got a new token, and the request is retried with it."""

    vendor: str
    auth: Callable[[], Mapping[str, str]]
    on_unauthorized: Callable[[], bool] = lambda: False
    max_attempts: int = 6
    backoff_base: float = 0.5
    max_wait: float = 300.0
    timeout: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    # How long to wait after a 429 that names no wait (neither Retry-After nor a reset header); a vendor whose
    # throttle is a fixed window (rack-attack's, for one) knows better than the one-second default.
    unnamed_wait: Callable[[], float] | None = None
    stats: HttpStats = field(default_factory=HttpStats)

    def __post_init__(self) -> None:
        self._http = httpx.Client(timeout=self.timeout, follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    def get(self, url: str, params: Mapping[str, Any] | None = None) -> Any:
        """The decoded JSON body of a successful GET; raises ImportAuthError or ImportSourceError."""
        return self._send("GET", url, params, None)[0]

    def get_with_headers(self, url: str, params: Mapping[str, Any] | None = None) -> tuple[Any, httpx.Headers]:
        """The body and the headers of a successful GET, for vendors that page by a ``Link`` header."""
        return self._send("GET", url, params, None)

    def post(self, url: str, payload: Mapping[str, Any]) -> Any:
        """A read that the vendor serves as a POST with a JSON body (a search endpoint): same policy as GET."""
        return self._send("POST", url, None, payload)[0]

    def _send(
        self, method: str, url: str, params: Mapping[str, Any] | None, payload: Mapping[str, Any] | None
    ) -> tuple[Any, httpx.Headers]:
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            self.stats.count(requests=1)
            try:
                response = self._http.request(method, url, params=params, json=payload, headers=dict(self.auth()))
            except httpx.TransportError as exc:  # refused, reset, dropped mid-body, timed out
                self._retry_or_raise(attempt, f"{type(exc).__name__}: {exc}", None)
                continue
            status = response.status_code
            if status in (401, 403):
                if status == 401 and not refreshed and self.on_unauthorized():
                    refreshed = True
                    continue
                raise ImportAuthError(
                    f"{self.vendor} rejected the credentials ({status} on {httpx.URL(url).path}): "
                    f"{_excerpt(response)}. Fix the integration's credentials and start the import again; "
                    "it resumes where it stopped."
                )
            if status == 429:
                wait = _retry_after(response.headers, self.unnamed_wait)
                self._retry_or_raise(attempt, "429 Too Many Requests", wait)
                continue
            if status >= 500:
                self._retry_or_raise(attempt, f"{status} {_excerpt(response)}", None)
                continue
            if status >= 400:
                path = httpx.URL(url).path
                raise ImportSourceError(f"{self.vendor} answered {status} on {path}: {_excerpt(response)}")
            try:
                body = response.json()
            except ValueError:
                # A body cut short by a dropped connection decodes as broken JSON: retry it like the drop.
                self._retry_or_raise(attempt, f"unreadable JSON from {httpx.URL(url).path}", None)
                continue
            self._respect_budget(response.headers)
            return body, response.headers

    def _retry_or_raise(self, attempt: int, reason: str, wait: float | None) -> None:
        if attempt >= self.max_attempts:
            raise ImportSourceError(f"{self.vendor}: gave up after {attempt} attempts ({reason})")
        if wait is None:
            delay = min(self.max_wait, self.backoff_base * 2 ** (attempt - 1))
            wait = delay / 2 + random.uniform(0, delay / 2)
        wait = min(wait, self.max_wait)
        logger.warning("%s: %s; retrying in %.1fs (attempt %d)", self.vendor, reason, wait, attempt)
        self.stats.count(retries=1, waited=wait)
        self.sleep(wait)

    def _respect_budget(self, headers: httpx.Headers) -> None:
        """When a vendor says the budget is spent, wait for the reset instead of collecting a 429."""
        remaining = next((headers[name] for name in _REMAINING if name in headers), None)
        if remaining is None or not remaining.strip().isdigit() or int(remaining) > 0:
            return
        reset = next((headers[name] for name in _RESET if name in headers), None)
        wait = _seconds(reset) if reset else 1.0
        if wait > 0:
            self.stats.count(waited=min(wait, self.max_wait))
            self.sleep(min(wait, self.max_wait))


def _seconds(value: str) -> float:
    """A reset given as seconds to wait or as an epoch time (vendors do both)."""
    try:
        number = float(value)
    except ValueError:
        return 1.0
    return max(0.0, number - time.time()) if number > 1_000_000_000 else max(0.0, number)


def _retry_after(headers: httpx.Headers, unnamed: Callable[[], float] | None = None) -> float:
    """``Retry-After`` in seconds or as an HTTP date; when absent, a reset header, else ``unnamed()`` (1 second
    without it); 1 second when unreadable."""
    value = headers.get("retry-after", "")
    if not value:
        reset = next((headers[name] for name in _RESET if name in headers), None)
        if reset:
            return _seconds(reset)
        return unnamed() if unnamed is not None else 1.0
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return 1.0


def _excerpt(response: httpx.Response) -> str:
    return " ".join(response.text.split())[:200] or response.reason_phrase
