"""DRF's exception handler, answering every API error in the one shape of tickets/errors.py.

Domain errors raised by services (a memory version conflict, an edit that cannot apply) are mapped
here so that views stay thin and every endpoint answers them the same way.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response

from memory.services import MemoryEditError, VersionConflict
from tickets.errors import error_body

logger = logging.getLogger(__name__)


def _translate(exc: Exception) -> exceptions.APIException | None:
    """Turn Django and domain exceptions into DRF ones; None for anything unexpected."""
    if isinstance(exc, exceptions.APIException):
        return exc
    if isinstance(exc, Http404):
        return exceptions.NotFound(str(exc) or "Not found.")
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(str(exc) or None)
    if isinstance(exc, RequestDataTooBig):
        error = exceptions.APIException("The request body is too large.", code="payload_too_large")
        error.status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
        return error
    if isinstance(exc, VersionConflict):
        error = exceptions.APIException(str(exc), code="version_conflict")
        error.status_code = status.HTTP_409_CONFLICT
        error.current_version = exc.current_version  # type: ignore[attr-defined]
        return error
    if isinstance(exc, MemoryEditError):
        return exceptions.ValidationError({"non_field_errors": [str(exc)]}, code="invalid_edit")
    return None


def _code_of(exc: exceptions.APIException) -> str:
    if isinstance(exc, exceptions.ValidationError):
        return "validation_error"
    codes = exc.get_codes()
    return codes if isinstance(codes, str) else exc.default_code


def _message_and_details(exc: exceptions.APIException) -> tuple[str, Any]:
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        return "The request is invalid; see details.", detail
    details: dict[str, Any] = {}
    wait = getattr(exc, "wait", None) if isinstance(exc, exceptions.Throttled) else None
    if wait is not None:
        details["retry_after"] = int(wait)
    if hasattr(exc, "current_version"):
        details["current_version"] = exc.current_version
    return str(exc.detail), details


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    api_exc = _translate(exc)
    if api_exc is None:
        # A bug, not the client's fault: log it with its traceback, answer in the usual shape.
        logger.exception("Unhandled error in %s", context.get("view").__class__.__name__, exc_info=exc)
        return Response(
            error_body("internal_error", "Something went wrong on our side; it has been logged."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    message, details = _message_and_details(api_exc)
    headers: dict[str, str] = {}
    if getattr(api_exc, "auth_header", None):
        headers["WWW-Authenticate"] = api_exc.auth_header  # type: ignore[attr-defined]
    if "retry_after" in details:
        headers["Retry-After"] = str(details["retry_after"])
    return Response(error_body(_code_of(api_exc), message, details), status=api_exc.status_code, headers=headers)
