"""Request-scoped log context: every line a request writes carries its request id."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from telemetry.logs import log_enter, log_exit

# A proxy's X-Request-ID is kept when it looks like an id; anything else gets a fresh one.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = request.headers.get("X-Request-ID", "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        token = log_enter({"request_id": request_id})
        try:
            response = self.get_response(request)
        finally:
            log_exit(token)
        response["X-Request-ID"] = request_id
        return response
