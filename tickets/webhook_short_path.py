"""The webhook intake's short path through the WSGI server: a valid delivery is stored without Django's handler.

A delivery that Django's whole stack would accept (an allowed host, storable headers, a known integration, a
good signature, safe JSON) is what a helpdesk sends hundreds of times a second, and on two cores Django's request
machinery (request object, eleven middlewares, URL resolution, response object) cost more CPU than the work
itself. ``WebhookShortPath`` wraps the WSGI application: it stores such a delivery through the same
``webhook_intake`` and answers with the same body and headers. Anything else (another URL or method, a query
string, a host or header Django would refuse, an unknown URL, a bad signature, a Front challenge, a body too
large or not safe JSON, an error) goes to Django unchanged, body included, so every refusal is Django's own.
``tests/tickets/test_webhook_short_path.py`` compares the two paths' answers and stored events.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core import signals
from django.http.request import split_domain_port, validate_host

from telemetry.logs import log_enter, log_exit, request_id_for
from tickets.helpdesks import SignatureError, signature_verify
from tickets.input_safety import has_unstorable, json_loads_safe
from tickets.intake import integration_for_webhook, webhook_intake
from tickets.webhook_views import MAX_BODY_BYTES

logger = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

# The URL of tickets/webhook_urls.py under support_agent/urls.py, for the kinds and tokens Django's converters
# accept; a token with other characters takes Django's path.
_WEBHOOK_PATH = re.compile(r"/webhooks/([-a-zA-Z0-9_]+)/([-a-zA-Z0-9_]+)/")
_STATUS = {202: "202 Accepted", 200: "200 OK"}


class WebhookShortPath:
    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        match = _WEBHOOK_PATH.fullmatch(environ.get("PATH_INFO", ""))
        if match is None or environ.get("REQUEST_METHOD") != "POST" or not _plain(environ):
            return self.app(environ, start_response)
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return self.app(environ, start_response)
        if not 0 <= length <= MAX_BODY_BYTES:
            return self.app(environ, start_response)
        body = environ["wsgi.input"].read(length)
        answer = self._store(environ, match[1], match[2], body)
        if answer is None:  # Django answers it, from the same bytes
            environ["wsgi.input"] = io.BytesIO(body)
            return self.app(environ, start_response)
        status, headers, content = answer
        start_response(status, headers)
        return [content]

    def _store(
        self, environ: dict[str, Any], kind: str, token: str, body: bytes
    ) -> tuple[str, list[tuple[str, str]], bytes] | None:
        request_id = request_id_for(environ.get("HTTP_X_REQUEST_ID", ""))
        scope = log_enter({"request_id": request_id})
        signals.request_started.send(sender=type(self), environ=environ)
        try:
            return self._intake(environ, kind, token, body, request_id)
        except Exception:  # Django's path tries again and answers as it does for any error
            logger.warning("webhook short path failed; Django's path answers", exc_info=True)
            return None
        finally:
            signals.request_finished.send(sender=type(self))
            log_exit(scope)

    def _intake(
        self, environ: dict[str, Any], kind: str, token: str, body: bytes, request_id: str
    ) -> tuple[str, list[tuple[str, str]], bytes] | None:
        integration = integration_for_webhook(kind=kind, token=token)
        if integration is None:
            return None
        headers = _headers(environ)
        try:
            signature_verify(kind=kind, headers=headers, body=body, secret=integration.signing_secret)
        except SignatureError:
            return None
        if headers.get("x-front-challenge"):
            return None
        try:
            payload = json_loads_safe(body.decode("utf-8"))
        except ValueError:  # not UTF-8, not JSON, or unsafe: each has its own 400 on Django's path
            return None
        result = webhook_intake(integration=integration, headers=headers, raw_body=body, payload=payload)
        code = 202 if result.created else 200
        content = json.dumps({"status": "accepted" if result.created else "duplicate", "event_id": result.event.pk})
        encoded = content.encode()
        response_headers = [("Content-Type", "application/json"), *_security_headers(environ)]
        response_headers += [("Content-Length", str(len(encoded))), ("X-Request-ID", request_id)]
        return _STATUS[code], response_headers, encoded


def _plain(environ: dict[str, Any]) -> bool:
    """What Django's stack would let through to the view: no query string, the application at the root, an
    allowed Host header, no header carrying NUL or a lone surrogate, and no redirect to HTTPS to make."""
    if environ.get("QUERY_STRING") or environ.get("SCRIPT_NAME") or settings.FORCE_SCRIPT_NAME:
        return False
    if settings.USE_X_FORWARDED_HOST or (settings.DEBUG and not settings.ALLOWED_HOSTS):
        return False
    if settings.DISALLOWED_USER_AGENTS or settings.PREPEND_WWW:  # CommonMiddleware's refusals and redirects
        return False
    domain, _port = split_domain_port(environ.get("HTTP_HOST", ""))
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    if settings.SECURE_SSL_REDIRECT and not _is_secure(environ):
        return False
    for name, value in environ.items():
        sent = name.startswith("HTTP_") or name == "CONTENT_TYPE"
        if sent and isinstance(value, str) and has_unstorable(value):
            return False
    return True


def _is_secure(environ: dict[str, Any]) -> bool:
    """``HttpRequest.is_secure`` on the WSGI environment (SECURE_PROXY_SSL_HEADER, then the URL scheme)."""
    if settings.SECURE_PROXY_SSL_HEADER:
        header, secure_value = settings.SECURE_PROXY_SSL_HEADER
        value = environ.get(header)
        if value is not None:
            return bool(value.split(",", 1)[0].strip() == secure_value)
    return bool(environ.get("wsgi.url_scheme") == "https")


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    """The request's headers as the view reads them (``request.headers``, names in lower case)."""
    headers = {}
    for name, value in environ.items():
        if name.startswith("HTTP_"):
            headers[name[5:].replace("_", "-").lower()] = value
        elif name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            headers[name.replace("_", "-").lower()] = value
    return headers


def _security_headers(environ: dict[str, Any]) -> list[tuple[str, str]]:
    """What SecurityMiddleware and XFrameOptionsMiddleware add to the view's answer, from the same settings."""
    headers: list[tuple[str, str]] = []
    if settings.SECURE_HSTS_SECONDS and _is_secure(environ):
        hsts = f"max-age={settings.SECURE_HSTS_SECONDS}"
        if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
            hsts += "; includeSubDomains"
        if settings.SECURE_HSTS_PRELOAD:
            hsts += "; preload"
        headers.append(("Strict-Transport-Security", hsts))
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append(("X-Content-Type-Options", "nosniff"))
    policy = settings.SECURE_REFERRER_POLICY
    if policy:
        values = [v.strip() for v in policy.split(",")] if isinstance(policy, str) else policy
        headers.append(("Referrer-Policy", ",".join(values)))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append(("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY))
    headers.append(("X-Frame-Options", getattr(settings, "X_FRAME_OPTIONS", "DENY").upper()))
    return headers
