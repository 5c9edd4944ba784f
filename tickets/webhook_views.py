"""The webhook endpoint: authenticate the raw bytes, store the event, answer. Plain Django, no DRF."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from tickets.errors import error_response
from tickets.helpdesks import SignatureError, signature_verify
from tickets.input_safety import UnsafeJSON, json_loads_safe
from tickets.intake import integration_for_webhook, webhook_intake

MAX_BODY_BYTES = 1024 * 1024


def _body_read(request: HttpRequest) -> bytes | None:
    """At most 1 MiB + 1 bytes are read: anything longer is refused (None) without buffering it."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_BODY_BYTES:
        return None
    body = request.read(MAX_BODY_BYTES + 1)
    return None if len(body) > MAX_BODY_BYTES else body


def _payload(raw: bytes) -> object:
    return json_loads_safe(raw.decode("utf-8"))


@csrf_exempt
def webhook_receive(request: HttpRequest, kind: str, token: str) -> HttpResponse:
    if request.method != "POST":
        return error_response(405, "method_not_allowed", "Webhooks are delivered with POST.")
    integration = integration_for_webhook(kind=kind, token=token)
    if integration is None:
        return error_response(404, "not_found", "No webhook is configured at this URL.")
    raw = _body_read(request)
    if raw is None:
        return error_response(413, "payload_too_large", "Webhook bodies are limited to 1 MiB.")
    headers = {name.lower(): value for name, value in request.headers.items()}
    try:
        signature_verify(kind=kind, headers=headers, body=raw, secret=integration.signing_secret)
    except SignatureError as exc:
        return error_response(401, "invalid_signature", str(exc))
    if headers.get("x-front-challenge"):
        # Front validates an application webhook URL by asking us to echo its challenge.
        return HttpResponse(headers["x-front-challenge"], content_type="text/plain")
    try:
        payload = _payload(raw)
    except UnsafeJSON as exc:
        return error_response(400, "unsafe_json", str(exc))
    except (UnicodeDecodeError, ValueError):
        return error_response(400, "malformed_json", "The body is not valid UTF-8 JSON.")
    result = webhook_intake(integration=integration, headers=headers, raw_body=raw, payload=payload)
    body = {"status": "accepted" if result.created else "duplicate", "event_id": result.event.pk}
    return JsonResponse(body, status=202 if result.created else 200)
