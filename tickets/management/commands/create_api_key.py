"""Create a server API key for an organisation (printed once, on the last line), or revoke one by prefix."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tickets.auth import api_key_create, api_key_revoke
from tickets.models import Organization


class Command(BaseCommand):
    help = "Print a new server API key for --org on the last line (only its hash is stored), or --revoke PREFIX."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="The organisation's slug.")
        parser.add_argument("--name", default="", help="What the key is for (shown in the admin).")
        parser.add_argument("--revoke", metavar="PREFIX", help="Revoke the key(s) with this prefix instead.")

    def handle(self, *args: Any, **options: Any) -> None:
        organization = Organization.objects.filter(slug=options["org"]).first()
        if organization is None:
            raise CommandError(f"No organisation with slug {options['org']!r}.")
        if options["revoke"]:
            revoked = api_key_revoke(organization=organization, prefix=options["revoke"])
            if not revoked:
                raise CommandError(f"No live key with prefix {options['revoke']!r} in {organization.slug}.")
            self.stdout.write(f"Revoked {revoked} key(s).")
            return
        api_key, raw_key = api_key_create(organization=organization, name=options["name"])
        self.stderr.write(f"API key {api_key.prefix}… for {organization.slug}; it is shown once, store it now.")
        self.stdout.write(raw_key)
