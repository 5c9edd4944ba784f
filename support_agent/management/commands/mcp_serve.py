"""`manage.py mcp_serve`: supportmem's MCP server over stdio, for agents that launch their tools as processes.

The server API key comes from SUPPORTMEM_API_KEY (or --api-key); every tool is scoped to its organisation.
Nothing but MCP messages may go to stdout, so logging goes to stderr.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from support_agent.mcp_server import stdio_serve
from tickets.auth import api_key_authenticate


class Command(BaseCommand):
    help = "Serve supportmem's memory tools over MCP on stdin/stdout."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--api-key", default="", help="Server API key (default: $SUPPORTMEM_API_KEY).")

    def handle(self, *args: Any, **options: Any) -> None:
        key = options["api_key"] or os.environ.get("SUPPORTMEM_API_KEY", "")
        client = api_key_authenticate(key) if key else None
        if client is None:
            raise CommandError("A live server API key is required (--api-key or SUPPORTMEM_API_KEY).")
        stdio_serve(client=client)
