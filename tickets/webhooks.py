"""Webhook signature verification, one scheme per helpdesk, always over the raw request bytes.

Every comparison is constant-time (hmac.compare_digest). Where the vendor signs a timestamp, a request more
than five minutes off in either direction is refused: a captured request cannot be replayed later.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from datetime import datetime

TOLERANCE_SECONDS = 5 * 60


class SignatureError(Exception):
    """The request is not authentic: missing or bad signature, stale timestamp, wrong token."""


Verifier = Callable[[Mapping[str, str], bytes, str, float], None]


def _b64_hmac(key: bytes, message: bytes, digest: str) -> str:
    return base64.b64encode(hmac.new(key, message, digest).digest()).decode()


def _require(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name, "").strip()
    if not value:
        raise SignatureError(f"missing {name} header")
    return value


def _check_fresh(timestamp: float, now: float) -> None:
    try:
        stale = abs(now - timestamp) > TOLERANCE_SECONDS
    except OverflowError:  # an absurd timestamp (say, 400 digits) is as stale as they come
        stale = True
    if stale:
        raise SignatureError("timestamp outside the 5-minute tolerance")


def _same(expected: str, given: str) -> None:
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise SignatureError("signature does not match")


def _secret(secret: str) -> bytes:
    if not secret:
        raise SignatureError("the integration has no signing secret configured")
    return secret.encode()


def verify_zendesk(headers: Mapping[str, str], body: bytes, secret: str, now: float) -> None:
    """HMAC-SHA256, base64, over the signature timestamp header followed directly by the body."""
    signature = _require(headers, "x-zendesk-webhook-signature")
    stamp = _require(headers, "x-zendesk-webhook-signature-timestamp")
    try:
        signed_at = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError):
        raise SignatureError("unreadable x-zendesk-webhook-signature-timestamp") from None
    _check_fresh(signed_at, now)
    _same(_b64_hmac(_secret(secret), stamp.encode() + body, "sha256"), signature)


def verify_intercom(headers: Mapping[str, str], body: bytes, secret: str, now: float) -> None:
    """HMAC-SHA1 with the app's client secret, hex, in ``X-Hub-Signature: sha1=<hex>``. No timestamp."""
    signature = _require(headers, "x-hub-signature")
    _same("sha1=" + hmac.new(_secret(secret), body, "sha1").hexdigest(), signature.lower())


def verify_helpscout(headers: Mapping[str, str], body: bytes, secret: str, now: float) -> None:
    """HMAC-SHA1, base64, over the body. No timestamp."""
    signature = _require(headers, "x-helpscout-signature")
    _same(_b64_hmac(_secret(secret), body, "sha1"), signature)


def verify_front(headers: Mapping[str, str], body: bytes, secret: str, now: float) -> None:
    """Rule webhooks: HMAC-SHA1 over the body. App webhooks (timestamp header present): HMAC-SHA256 over
    ``timestamp:body`` with the timestamp in milliseconds. Both base64."""
    signature = _require(headers, "x-front-signature")
    stamp = headers.get("x-front-request-timestamp", "").strip()
    if not stamp:
        _same(_b64_hmac(_secret(secret), body, "sha1"), signature)
        return
    try:
        signed_at = int(stamp) / 1000
    except (ValueError, OverflowError):
        raise SignatureError("unreadable x-front-request-timestamp") from None
    _check_fresh(signed_at, now)
    _same(_b64_hmac(_secret(secret), stamp.encode() + b":" + body, "sha256"), signature)


def standard_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: the base64 after ``whsec_``, decoded."""
    if not secret:
        raise SignatureError("the integration has no signing secret configured")
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("the signing secret is not a valid whsec_ secret") from None


def standard_sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one message (used by outbound delivery too)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + _b64_hmac(standard_key(secret), signed, "sha256")


def verify_standard(headers: Mapping[str, str], body: bytes, secret: str, now: float) -> None:
    """Standard Webhooks (and Svix, whose headers are ``svix-*``): HMAC-SHA256 over ``id.timestamp.body``;
    the signature header may carry several space-separated ``v1,<b64>`` entries (key rotation)."""
    prefix = "webhook" if headers.get("webhook-id") else "svix"
    msg_id = _require(headers, f"{prefix}-id")
    stamp = _require(headers, f"{prefix}-timestamp")
    signatures = _require(headers, f"{prefix}-signature")
    try:
        signed_at = int(stamp)
    except ValueError:
        raise SignatureError(f"unreadable {prefix}-timestamp") from None
    _check_fresh(signed_at, now)
    expected = standard_sign(secret, msg_id, signed_at, body).encode()
    # Check every candidate (no early exit) so timing does not reveal which one matched.
    matched = False
    for candidate in signatures.split():
        matched |= hmac.compare_digest(expected, candidate.encode())
    if not matched:
        raise SignatureError("signature does not match")


def verify_freshdesk(headers: Mapping[str, str], body: bytes, secret: str, now: float) -> None:
    """Freshdesk signs nothing: the per-integration URL token authenticates it (checked before we get here).
    With a secret configured, the admin-defined ``X-Webhook-Token`` header must carry it as well."""
    if secret:
        _same(secret, _require(headers, "x-webhook-token"))


VERIFIERS: dict[str, Verifier] = {
    "zendesk": verify_zendesk,
    "intercom": verify_intercom,
    "helpscout": verify_helpscout,
    "front": verify_front,
    "freshdesk": verify_freshdesk,
    "standard": verify_standard,
}


def signature_verify(
    *, kind: str, headers: Mapping[str, str], body: bytes, secret: str, now: float | None = None
) -> None:
    """Raise SignatureError unless ``body`` carries a valid signature for this kind of integration.

    ``headers`` must have lower-case names. ``now`` (epoch seconds) is for tests of published vectors.
    """
    VERIFIERS[kind](headers, body, secret, time.time() if now is None else now)


def body_hash(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()
