"""Request-scoped log context: every line a request writes carries its request id."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from telemetry.logs import log_enter, log_exit, request_id_for


class RequestContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_for(request.headers.get("X-Request-ID", ""))
        token = log_enter({"request_id": request_id})
        try:
            response = self.get_response(request)
        finally:
            log_exit(token)
        response["X-Request-ID"] = request_id
        return response
