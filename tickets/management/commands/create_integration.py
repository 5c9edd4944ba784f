"""python manage.py create_integration --org SLUG --kind KIND [--secret S]: prints the webhook URL path last."""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.urls import reverse

from tickets.models import Integration, Organization

# Kinds whose secret the helpdesk issues: we cannot make one up, the admin must paste it.
_VENDOR_ISSUED = {"zendesk", "intercom", "front", "chatwoot"}


def _generated_secret(kind: str) -> str:
    if kind == "standard":
        return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    if kind == "zammad":
        return secrets.token_urlsafe(32)  # the admin pastes it as the webhook's HMAC SHA1 signature token
    if kind == "helpscout":
        return secrets.token_urlsafe(24)[:32]  # Help Scout accepts secrets of at most 40 characters
    return ""  # Freshdesk: the URL token authenticates; a secret would require an X-Webhook-Token header


class Command(BaseCommand):
    help = "Create or update an organisation's helpdesk integration and print its webhook URL path (last line)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="organisation slug")
        parser.add_argument("--kind", required=True, choices=[k.value for k in Integration.Kind])
        parser.add_argument("--secret", help="signing secret (Zendesk/Intercom/Front: as the helpdesk shows it)")
        parser.add_argument("--name", default=None)
        parser.add_argument("--reply-mode", choices=[m.value for m in Integration.ReplyMode], default=None)
        parser.add_argument("--outbound-url", default=None, help="helpdesk API base URL (or receiver URL for standard)")
        parser.add_argument(
            "--credentials", default=None, help='outbound credentials as JSON, e.g. {"access_token": ".."}'
        )
        parser.add_argument(
            "--verifies-emails",
            choices=["yes", "no"],
            default=None,
            help="whether this helpdesk proves requesters own their email (docs/security.md); default no",
        )
        parser.add_argument("--rotate-token", action="store_true", help="issue a new webhook URL (the old one stops)")

    def handle(self, *args: Any, **options: Any) -> None:
        organization = Organization.objects.filter(slug=options["org"]).first()
        if organization is None:
            raise CommandError(f"no organisation with slug {options['org']!r}")
        credentials = self._credentials(options["credentials"])
        with transaction.atomic():
            integration, created = Integration.objects.select_for_update().get_or_create(
                organization=organization, kind=options["kind"]
            )
            self._apply(integration, options, credentials, created)
        verb = "Created" if created else "Updated"
        self.stdout.write(f"{verb} {integration.get_kind_display()} integration for {organization.slug}")
        if options["secret"] is None and integration.signing_secret and created:
            self.stdout.write(f"Signing secret (enter it in the helpdesk): {integration.signing_secret}")
        self.stdout.write(
            reverse("webhooks:receive", kwargs={"kind": integration.kind, "token": integration.webhook_token})
        )

    def _credentials(self, raw: str | None) -> dict[str, Any] | None:
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise CommandError(f"--credentials is not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise CommandError("--credentials must be a JSON object")
        return value

    def _apply(
        self, integration: Integration, options: dict[str, Any], credentials: dict[str, Any] | None, created: bool
    ) -> None:
        kind = integration.kind
        if options["secret"] is not None:
            integration.signing_secret = options["secret"]
        elif created:
            if kind in _VENDOR_ISSUED:
                raise CommandError(f"--secret is required for {kind}: paste the signing secret the helpdesk shows")
            integration.signing_secret = _generated_secret(kind)
        if kind == "standard" and integration.signing_secret and not integration.signing_secret.startswith("whsec_"):
            raise CommandError("a Standard Webhooks secret starts with whsec_")
        for option, attribute in (
            ("name", "name"),
            ("reply_mode", "reply_mode"),
            ("outbound_url", "outbound_base_url"),
        ):
            if options[option] is not None:
                setattr(integration, attribute, options[option])
        if options["verifies_emails"] is not None:
            integration.verifies_emails = options["verifies_emails"] == "yes"
        if credentials is not None:
            integration.outbound_credentials = credentials
        if options["rotate_token"]:
            integration.webhook_token = secrets.token_urlsafe(32)
        integration.is_active = True
        integration.save()
