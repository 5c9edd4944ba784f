"""The MCP server driven by the SDK's own client over streamable HTTP, against the service as `make run` starts
it (gunicorn, two workers): list tools, search, read, propose an edit; another organisation's customer is not
found; no key, no service."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from memory.models import MemoryBlock, PendingMemoryEdit
from memory.services import blocks_ensure
from tests.tickets.live_procs import VENV_BIN, Proc, child_env, free_port, wait_until
from tickets.auth import api_key_create

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(900)]


def _gunicorn(tmp: Path) -> tuple[Proc, str]:
    port = free_port()
    env = child_env(redis_url="", tmp=tmp, HOST="127.0.0.1", PORT=str(port))
    args = [str(VENV_BIN / "gunicorn"), "-c", "python:support_agent.gunicorn_conf", "support_agent.wsgi"]
    proc = Proc(args, env, tmp / "gunicorn.log")
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(answers, timeout=120, what="gunicorn")
    return proc, base


async def _session_calls(url: str, key: str, calls: list[tuple[str, dict[str, Any]]]) -> tuple[list[str], list[Any]]:
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
    async with (
        http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        tools = [tool.name for tool in (await session.list_tools()).tools]
        results = [await session.call_tool(name, arguments) for name, arguments in calls]
    return tools, results


def _payload(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    if result.structured_content is not None:
        return result.structured_content
    return json.loads(result.content[0].text)


def test_mcp_client_over_http_searches_reads_and_proposes_within_its_organisation(tmp_path, actors):
    blocks_ensure(customer=actors.customer)
    blocks_ensure(customer=actors.stranger)
    actors.org.memory_edits_need_approval = True
    actors.org.save(update_fields=["memory_edits_need_approval"])
    _, key = api_key_create(organization=actors.org, name="claude-desktop")
    web, base = _gunicorn(tmp_path)
    dana, stranger = actors.customer.pk, actors.stranger.pk
    try:
        tools, results = asyncio.run(
            _session_calls(
                f"{base}/mcp/",
                key,
                [
                    ("search_memory", {"customer_id": dana, "query": "card reader sync firmware"}),
                    ("read_core_memory", {"customer_id": dana}),
                    ("list_tickets", {"customer_id": dana}),
                    ("get_ticket", {"customer_id": dana, "ticket_id": actors.solved_ticket.pk}),
                    (
                        "propose_memory_edit",
                        {
                            "customer_id": dana,
                            "label": "preferences",
                            "operation": "append",
                            "new_content": "Prefers email over phone.",
                            "reason": "said so in chat",
                        },
                    ),
                    ("read_core_memory", {"customer_id": stranger}),
                    ("search_memory", {"customer_id": stranger, "query": "anything"}),
                ],
            )
        )
        unauthenticated = httpx.post(f"{base}/mcp/", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    finally:
        web.stop()
    assert {"search_memory", "read_core_memory", "list_tickets", "get_ticket", "propose_memory_edit"} <= set(tools)

    search, core, tickets, ticket, proposal, other_core, other_search = results
    assert any("firmware to 4.2.3" in m["body"] for m in _payload(search)["messages"]), _payload(search)
    labels = {block["label"] for block in _payload(core)["blocks"]}
    assert "preferences" in labels
    assert {t["subject"] for t in _payload(tickets)["tickets"]} == {
        "Card reader not syncing",
        "Charged twice for March",
    }
    assert [m["body"][:9] for m in _payload(ticket)["messages"]] == ["My card r", "Please up"]

    answer = _payload(proposal)
    assert answer["status"] == "pending_review"  # the organisation requires approval for memory edits
    edit = PendingMemoryEdit.objects.get(pk=answer["pending_edit_id"])
    assert (edit.change_source, edit.new_content, edit.customer_id) == ("mcp", "Prefers email over phone.", dana)
    assert "MCP client" in edit.reason and "said so in chat" in edit.reason
    assert "Prefers email" not in MemoryBlock.objects.get(customer=actors.customer, label="preferences").value

    for result in (other_core, other_search):
        assert result.is_error and f"Customer {stranger} not found" in result.content[0].text
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"]["code"] == "not_authenticated"
