"""Input no request may smuggle past the edge: text PostgreSQL cannot store and JSON nested without end.

PostgreSQL refuses a NUL character in text and jsonb, and psycopg cannot encode a lone UTF-16 surrogate
(``"\\ud800"`` in JSON decodes to one); either reached the database as a 500 from whichever query met it
first. Deeply nested JSON (``[[[[…`` two thousand deep) exhausted Python's recursion in the parser. Both
are refused here, once, before any view runs:

- ``UnstorableInputMiddleware`` answers 400 for a path, query string or header carrying such text, in the
  JSON error shape under /api/ and /webhooks/ and as plain text elsewhere (the admin).
- ``json_loads_safe`` parses a body with a nesting limit and the same character check; DRF's
  ``SafeJSONParser`` and the webhook intake both use it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from tickets.errors import error_response

# Deeper than any helpdesk payload we parse (Zendesk, Intercom, Front: under 10), far below recursion trouble.
MAX_JSON_DEPTH = 64
# NUL, and lone surrogates (a str from "\udXXX" escapes or surrogateescape decoding): neither can be stored.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_JSON_PREFIXES = ("/api/", "/webhooks/")


class UnsafeJSON(ValueError):
    """The body is valid JSON that we refuse: nested too deep, or holding text PostgreSQL cannot store."""


def has_unstorable(text: str) -> bool:
    return _UNSTORABLE.search(text) is not None


# A JSON string (escapes included), and the brackets left once strings are gone: both scanned in C, not per char.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKETS = re.compile(r"[\[\]{}]")
# An escape that decodes to unstorable text (\u0000, \ud800-\udfff). Without one, no parsed string can hold any.
_UNSTORABLE_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


def _depth_exceeds(text: str, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than ``limit``, before parsing."""
    if text.count("[") + text.count("{") <= limit:
        return False  # too few brackets to nest that deep: the usual webhook body stops here
    depth = 0
    for char in _BRACKETS.findall(_JSON_STRING.sub("", text)):
        if char in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _unstorable_path(value: Any, path: str = "$") -> str | None:
    """The JSON path of the first key or string holding unstorable text, or None."""
    if isinstance(value, str):
        return path if has_unstorable(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if has_unstorable(key):
                return path
            found = _unstorable_path(item, f"{path}.{key}")
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _unstorable_path(item, f"{path}[{index}]")
            if found:
                return found
    return None


def json_loads_safe(text: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that refuses (UnsafeJSON) nesting past ``max_depth`` and NUL or lone surrogates in any
    key or string; malformed JSON raises ValueError as json.loads does."""
    if has_unstorable(text):
        raise UnsafeJSON("The body contains a NUL character or an invalid Unicode code point.")
    if _depth_exceeds(text, max_depth):
        raise UnsafeJSON(f"The JSON nests deeper than {max_depth} levels.")
    value = json.loads(text)
    where = _unstorable_path(value) if _UNSTORABLE_ESCAPE.search(text) else None
    if where:
        raise UnsafeJSON(f"{where} contains a NUL character or an unpaired surrogate (\\u0000, \\ud800-\\udfff).")
    return value


class SafeJSONParser(JSONParser):
    """DRF's JSON parser on top of ``json_loads_safe``. The only parser the API has: a form or multipart body
    where JSON is expected is answered 415 by DRF."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        raw = stream.read() if stream is not None else b""
        try:
            return json_loads_safe(raw.decode("utf-8"))
        except UnsafeJSON as exc:
            raise ParseError(str(exc), code="unsafe_json") from None
        except (UnicodeDecodeError, ValueError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


def _unstorable_part(request: HttpRequest) -> str | None:
    """Which part of the request line or headers carries text PostgreSQL cannot store, if any."""
    if has_unstorable(request.path) or has_unstorable(request.path_info):
        return "path"
    for key, values in request.GET.lists():
        if has_unstorable(key) or any(has_unstorable(value) for value in values):
            return "query"
    for name, value in request.META.items():
        sent = name.startswith("HTTP_") or name in {"CONTENT_TYPE", "QUERY_STRING"}
        if sent and isinstance(value, str) and has_unstorable(value):
            return "headers"
    return None


class UnstorableInputMiddleware:
    """First in the chain: a request whose path, query or headers hold NUL or a lone surrogate is a 400."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        part = _unstorable_part(request)
        if part is None:
            return self.get_response(request)
        message = f"The request {part} contains a NUL character or an invalid Unicode code point."
        if request.path.startswith(_JSON_PREFIXES):
            return error_response(400, "invalid_characters", message, {"part": part})
        return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")
