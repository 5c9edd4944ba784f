"""supportmem's memory as an MCP server (the official ``mcp`` SDK), for other agents.

Tools: search a customer's memory, read their core memory, list and read their tickets, propose a memory edit.
Every call is scoped to the organisation of the server API key it carries (``Authorization: Bearer smk_…``
over HTTP; the key given to ``manage.py mcp_serve`` over stdio): another organisation's customer is not found.
A proposed edit goes through the organisation's approval rules like an agent's, recorded with source ``mcp``.

Served two ways: streamable HTTP at /mcp/ inside the Django service (``mcp_http``: stateless JSON
responses, so any gunicorn worker answers any request), and stdio (``manage.py mcp_serve``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, MutableMapping
from concurrent.futures import Future
from typing import Any, Literal, TypeVar

from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings

from memory.models import ChangeSource, MemoryBlock
from memory.selectors import blocks_for_customer, message_search, passage_search
from memory.services import BlockReadOnly, MemoryEditError, Provenance, block_agent_edit
from tickets.auth import ApiClient, api_key_authenticate
from tickets.errors import error_response
from tickets.models import Customer, Ticket
from tickets.selectors import customer_get, ticket_get, ticket_list

logger = logging.getLogger(__name__)
T = TypeVar("T")
MAX_MESSAGES = 50


class _Caller:
    """Who is calling: the API key's client, resolved per request over HTTP, fixed for a stdio server."""

    def __init__(self, fixed: ApiClient | None) -> None:
        self.fixed = fixed

    def client(self, ctx: Context) -> ApiClient:
        if self.fixed is not None:
            return self.fixed
        headers = ctx.headers or {}
        authorization = headers.get("authorization") or headers.get("Authorization") or ""
        scheme, _, token = authorization.partition(" ")
        client = api_key_authenticate(token.strip()) if scheme.lower() == "bearer" else None
        if client is None:
            raise ToolError("Invalid or missing server API key.")
        return client


def _customer(client: ApiClient, customer_id: int) -> Customer:
    try:
        return customer_get(organization=client.organization, customer_id=customer_id)
    except Http404:
        raise ToolError(f"Customer {customer_id} not found.") from None


async def _db(work: Callable[[], T]) -> T:
    """The ORM is synchronous: a tool's work (authentication included) runs on a worker thread, off the loop."""
    return await asyncio.to_thread(work)


def build_server(*, client: ApiClient | None = None) -> MCPServer:
    caller = _Caller(client)
    server = MCPServer(
        name="supportmem",
        instructions=(
            "Memory of a customer-support organisation. Customers are identified by their supportmem id "
            "(the REST API's customer id). Search before you answer; propose edits to core memory, do not "
            "assume they apply at once: the organisation may review them."
        ),
    )

    @server.tool()
    async def search_memory(ctx: Context, customer_id: int, query: str, limit: int = 10) -> dict[str, Any]:
        """Search one customer's memory: archival passages (facts, solved-ticket summaries) and past messages,
        hybrid-ranked (full text and embeddings). Returns the best `limit` of each (at most 25)."""
        return await _db(lambda: _search(caller.client(ctx), customer_id, query, max(1, min(limit, 25))))

    @server.tool()
    async def read_core_memory(ctx: Context, customer_id: int) -> dict[str, Any]:
        """The customer's core memory blocks (and the organisation's shared ones), as the agent sees them."""
        return await _db(lambda: _core_memory(caller.client(ctx), customer_id))

    @server.tool()
    async def list_tickets(ctx: Context, customer_id: int, status: str | None = None) -> dict[str, Any]:
        """The customer's tickets, most recently updated first; `status` filters (new, open, pending, solved...)."""
        return await _db(lambda: _tickets(caller.client(ctx), customer_id, status))

    @server.tool()
    async def get_ticket(ctx: Context, customer_id: int, ticket_id: int) -> dict[str, Any]:
        """One of the customer's tickets with its messages (the latest 50), oldest first."""
        return await _db(lambda: _ticket(caller.client(ctx), customer_id, ticket_id))

    @server.tool()
    async def propose_memory_edit(
        ctx: Context,
        customer_id: int,
        label: str,
        operation: Literal["append", "replace"],
        new_content: str,
        old_content: str = "",
        reason: str = "",
    ) -> dict[str, Any]:
        """Propose an edit to one of the customer's core memory blocks: append `new_content`, or replace
        `old_content` (which must occur exactly once) with it. Applied at once, or queued for staff review
        when the organisation requires approval; the answer says which."""
        return await _db(
            lambda: _propose(caller.client(ctx), customer_id, label, operation, new_content, old_content, reason)
        )

    return server


def _search(client: ApiClient, customer_id: int, query: str, limit: int) -> dict[str, Any]:
    customer = _customer(client, customer_id)
    passages = passage_search(organization=client.organization, customer=customer, query=query, page_size=limit)
    messages = message_search(customer=customer, query=query, page_size=limit)
    return {
        "customer_id": customer.pk,
        "passages": [
            {"id": p.pk, "text": p.text, "tags": list(getattr(p, "tags", []) or []), "created_at": p.created_at}
            for p in passages.results
        ],
        "messages": [
            {
                "id": m.pk,
                "ticket_id": m.ticket_id,
                "author_role": m.author_role,
                "body": m.body,
                "created_at": m.created_at,
            }
            for m in messages.results
        ],
    }


def _block(block: MemoryBlock) -> dict[str, Any]:
    return {
        "label": block.label,
        "scope": "customer" if block.customer_id else "organization",
        "description": block.description,
        "value": block.value,
        "chars": f"{len(block.value)}/{block.char_limit}",
        "read_only": block.read_only,
    }


def _core_memory(client: ApiClient, customer_id: int) -> dict[str, Any]:
    customer = _customer(client, customer_id)
    return {"customer_id": customer.pk, "blocks": [_block(b) for b in blocks_for_customer(customer=customer)]}


def _ticket_row(ticket: Ticket) -> dict[str, Any]:
    return {
        "id": ticket.pk,
        "subject": ticket.subject,
        "status": ticket.status,
        "created_at": ticket.created_at,
        "updated_at": ticket.updated_at,
    }


def _tickets(client: ApiClient, customer_id: int, status: str | None) -> dict[str, Any]:
    customer = _customer(client, customer_id)
    return {
        "customer_id": customer.pk,
        "tickets": [_ticket_row(t) for t in ticket_list(customer=customer, status=status)],
    }


def _ticket(client: ApiClient, customer_id: int, ticket_id: int) -> dict[str, Any]:
    customer = _customer(client, customer_id)
    try:
        ticket = ticket_get(customer=customer, ticket_id=ticket_id)
    except Http404:
        raise ToolError(f"Ticket {ticket_id} not found.") from None
    latest = list(ticket.messages.order_by("-created_at", "-id")[:MAX_MESSAGES])[::-1]
    messages = [
        {"id": m.pk, "author_role": m.author_role, "body": m.body, "is_public": m.is_public, "created_at": m.created_at}
        for m in latest
    ]
    return {**_ticket_row(ticket), "messages": messages}


def _propose(
    client: ApiClient, customer_id: int, label: str, operation: str, new_content: str, old_content: str, reason: str
) -> dict[str, Any]:
    customer = _customer(client, customer_id)
    block = next((b for b in blocks_for_customer(customer=customer) if b.label == label and b.customer_id), None)
    if block is None:
        raise ToolError(f"Customer {customer_id} has no memory block {label!r}.")
    why = f"MCP client (server API key {client.api_key.prefix}…)" + (f": {reason}" if reason else "")
    provenance = Provenance(source=ChangeSource.MCP, reason=why)
    try:
        outcome = block_agent_edit(
            block=block, operation=operation, new_content=new_content, old_content=old_content, provenance=provenance
        )
    except (BlockReadOnly, MemoryEditError) as exc:
        raise ToolError(str(exc)) from None
    result: dict[str, Any] = {
        "status": "applied" if outcome.applied else "pending_review",
        "block": _block(outcome.block),
        "warnings": outcome.warnings,
    }
    if outcome.pending is not None:
        result["pending_edit_id"] = outcome.pending.pk
    return result


# ---------------------------------------------------------------- streamable HTTP inside Django


class _HttpBridge:
    """The SDK's streamable-HTTP transport on an event loop of its own (one per process, started on first use);
    Django's view hands it each request as an ASGI call and returns what it answered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: MCPServer | None = None

    def loop(self) -> tuple[asyncio.AbstractEventLoop, MCPServer]:
        with self._lock:
            if self._loop is None or self._server is None:
                server = build_server()
                # Stateless JSON: no session pinned to one worker. Django's ALLOWED_HOSTS guards the Host header.
                server.streamable_http_app(
                    json_response=True,
                    stateless_http=True,
                    transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
                )
                loop = asyncio.new_event_loop()
                ready: Future[None] = Future()
                threading.Thread(target=self._run, args=(loop, server, ready), daemon=True, name="mcp-http").start()
                ready.result(timeout=30)
                self._loop, self._server = loop, server
            return self._loop, self._server

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, server: MCPServer, ready: Future[None]) -> None:
        async def serve() -> None:
            async with server.session_manager.run():
                ready.set_result(None)
                await asyncio.Event().wait()  # for the life of the process

        asyncio.set_event_loop(loop)
        loop.run_until_complete(serve())

    def handle(self, request: HttpRequest) -> HttpResponse:
        loop, server = self.loop()
        body = request.body
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": request.scheme,
            "path": request.path,
            "raw_path": request.path.encode(),
            "root_path": "",
            "query_string": request.META.get("QUERY_STRING", "").encode(),
            "headers": [
                (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in request.headers.items()
            ],
            "server": (request.get_host().split(":")[0], int(request.get_port())),
            "client": (request.META.get("REMOTE_ADDR", ""), 0),
        }
        answer: dict[str, Any] = {"status": 500, "headers": [], "body": b""}
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client stays connected until we have answered
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer["status"], answer["headers"] = message["status"], message.get("headers", [])
            elif message["type"] == "http.response.body":
                answer["body"] += message.get("body", b"")

        asyncio.run_coroutine_threadsafe(server.session_manager.handle_request(scope, receive, send), loop).result(
            timeout=300
        )
        response = HttpResponse(answer["body"], status=answer["status"])
        for name, value in answer["headers"]:
            if name.lower() not in {b"content-length", b"transfer-encoding", b"connection"}:
                response[name.decode("latin-1")] = value.decode("latin-1")
        return response


_bridge = _HttpBridge()


@csrf_exempt
def mcp_http(request: HttpRequest) -> HttpResponse:
    """POST /mcp/: one JSON-RPC exchange. The key is checked here too, so a bad one is a plain 401."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or api_key_authenticate(token.strip()) is None:
        response = error_response(401, "not_authenticated", "Send Authorization: Bearer <server API key>.")
        response["WWW-Authenticate"] = 'Bearer realm="mcp"'
        return response
    return _bridge.handle(request)


def stdio_serve(*, client: ApiClient) -> None:
    asyncio.run(build_server(client=client).run_stdio_async())
