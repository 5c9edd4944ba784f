"""Who is calling the API: an organisation's server (API key) or one verified widget visitor (widget token).

Server API keys are random, high-entropy strings, so a SHA-256 of the key is enough to store them
(nothing to brute-force); only the hash and a short prefix are kept. Widget tokens are signed, not
stored: a TimestampSigner over (organisation, customer) that expires after WIDGET_TOKEN_MAX_AGE seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core import signing
from django.db import transaction
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, NotFound
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from tickets.models import ApiKey, Customer, Organization

API_KEY_PREFIX = "smk_"
WIDGET_TOKEN_PREFIX = "wt_"
WIDGET_TOKEN_MAX_AGE = 3600
_WIDGET_SALT = "supportmem.widget-token"
# Writing last_used_at on every request would turn each read into a write; a minute is precise enough.
_LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class ApiClient:
    """An organisation's server, authenticated by one of its API keys."""

    organization: Organization
    api_key: ApiKey

    # Not a Django user: code that records "the logged-in user" (simple_history's history_user, Django's
    # auth) must not take it for one. Permissions check the principal's type instead.
    is_authenticated = False


@dataclass(frozen=True)
class WidgetVisitor:
    """One customer in a browser, verified by their organisation's backend (user_hash)."""

    organization: Organization
    customer: Customer

    is_authenticated = False  # see ApiClient


def _hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_create(*, organization: Organization, name: str = "") -> tuple[ApiKey, str]:
    """A new server API key. Returns the row and the key itself, which is never stored and shown once."""
    raw_key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(
        organization=organization, name=name, prefix=raw_key[:12], key_hash=_hash_key(raw_key)
    )
    return api_key, raw_key


def api_key_revoke(*, organization: Organization, prefix: str) -> int:
    """Revoke the organisation's live keys starting with that prefix; returns how many were revoked."""
    with transaction.atomic():
        return ApiKey.objects.filter(organization=organization, prefix=prefix, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )


def _bearer_token(request: Request) -> str | None:
    parts = get_authorization_header(request).split()
    if not parts or parts[0].lower() != b"bearer":
        return None
    if len(parts) != 2:
        raise AuthenticationFailed("The Authorization header must be 'Bearer <token>'.")
    try:
        return parts[1].decode("ascii")
    except UnicodeDecodeError:
        raise AuthenticationFailed("The token contains invalid characters.") from None


def api_key_authenticate(token: str) -> ApiClient | None:
    """The client a live server API key belongs to, or None (every door that takes a key uses this)."""
    api_key = (
        ApiKey.objects.select_related("organization").filter(key_hash=_hash_key(token), revoked_at__isnull=True).first()
    )
    if api_key is None:
        return None
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > _LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    return ApiClient(organization=api_key.organization, api_key=api_key)


class ApiKeyAuthentication(BaseAuthentication):
    """Authorization: Bearer smk_… (a server API key)."""

    def authenticate(self, request: Request) -> tuple[ApiClient, ApiKey] | None:
        token = _bearer_token(request)
        if token is None:
            return None
        client = api_key_authenticate(token)
        if client is None:
            raise AuthenticationFailed("Invalid or revoked API key.")
        return client, client.api_key

    def authenticate_header(self, request: Request) -> str:
        # A WWW-Authenticate header makes DRF answer 401 (not 403) when credentials are missing.
        return 'Bearer realm="api"'


def user_hash_for(*, organization: Organization, user_id: str) -> str:
    """What the organisation's backend computes: HMAC-SHA256(widget secret, user_id), hex."""
    return hmac.new(organization.widget_secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def widget_secret_rotate(*, organization: Organization) -> str:
    """A new widget secret for the organisation; sessions signed with the old one stop verifying at once."""
    organization.widget_secret = secrets.token_urlsafe(32)
    organization.save(update_fields=["widget_secret"])
    return organization.widget_secret


def user_hash_valid(*, organization: Organization, user_id: str, user_hash: str) -> bool:
    return hmac.compare_digest(user_hash_for(organization=organization, user_id=user_id), user_hash.lower())


def widget_token_issue(*, customer: Customer) -> str:
    payload = {"o": customer.organization_id, "c": customer.pk}
    return WIDGET_TOKEN_PREFIX + signing.TimestampSigner(salt=_WIDGET_SALT).sign_object(payload, compress=False)


def widget_token_read(token: str) -> tuple[int, int]:
    """(organisation id, customer id) from a valid, unexpired token; AuthenticationFailed otherwise."""
    if not token.startswith(WIDGET_TOKEN_PREFIX):
        raise AuthenticationFailed("Not a widget token.")
    signer = signing.TimestampSigner(salt=_WIDGET_SALT)
    try:
        payload: Any = signer.unsign_object(token[len(WIDGET_TOKEN_PREFIX) :], max_age=WIDGET_TOKEN_MAX_AGE)
    except signing.SignatureExpired:
        raise AuthenticationFailed("The widget token expired; start a new session.") from None
    except (signing.BadSignature, ValueError, UnicodeDecodeError):
        raise AuthenticationFailed("Invalid widget token.") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("o"), int) or not isinstance(payload.get("c"), int):
        raise AuthenticationFailed("Invalid widget token.")
    return payload["o"], payload["c"]


class WidgetTokenAuthentication(BaseAuthentication):
    """Authorization: Bearer wt_… (a short-lived token from the widget session endpoint)."""

    def authenticate(self, request: Request) -> tuple[WidgetVisitor, str] | None:
        token = _bearer_token(request)
        if token is None:
            return None
        organization_id, customer_id = widget_token_read(token)
        customer = (
            Customer.objects.select_related("organization")
            .filter(pk=customer_id, organization_id=organization_id)
            .first()
        )
        if customer is None:  # erased since the token was issued
            raise AuthenticationFailed("Invalid widget token.")
        return WidgetVisitor(organization=customer.organization, customer=customer), token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="widget"'


def widget_organization_get(*, publishable_key: str) -> Organization:
    """The organisation behind a publishable key in a widget URL, or 404."""
    organization = Organization.objects.filter(widget_publishable_key=publishable_key).first()
    if organization is None:
        raise NotFound("No widget with that publishable key.")
    return organization


class IsApiClient(BasePermission):
    def has_permission(self, request: Request, view: APIView) -> bool:
        return isinstance(request.user, ApiClient)


class IsWidgetVisitor(BasePermission):
    """A verified visitor, and only on their own organisation's widget URLs (another's is a 404)."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        visitor = request.user
        if not isinstance(visitor, WidgetVisitor):
            return False
        if visitor.organization.widget_publishable_key != view.kwargs.get("publishable_key"):
            raise NotFound("No widget with that publishable key.")
        return True
