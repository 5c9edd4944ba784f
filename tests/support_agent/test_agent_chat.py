"""`manage.py agent_chat`: offline with no key, and the openai backend when OPENAI_BASE_URL points at a server."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from support_agent.models import AgentRun
from tests.support_agent.fake_openai import Error, tool_calls
from tickets.models import TicketMessage


def _chat(*args: str, **options) -> str:
    out = StringIO()
    call_command("agent_chat", *args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def test_agent_chat_offline(actors, offline):
    output = _chat("--org", "acme", "--customer", "zd-1", "--message", "I prefer phone calls in the morning.")
    assert output.startswith("(offline model)")
    run = AgentRun.objects.get()
    assert (run.trigger, run.model_name, run.ticket_id) == ("manual", "offline model", None)
    assert run.trigger_message.body == "I prefer phone calls in the morning."


def test_agent_chat_uses_the_openai_compatible_server(actors, fake_llm):
    fake_llm.script = [
        tool_calls(("list_tickets", {"status": None, "request_heartbeat": True})),
        tool_calls(("send_message", {"message": "You have two tickets.", "request_heartbeat": False})),
    ]
    output = _chat("--org", "acme", "--customer", "dana@example.com", "--message", "How many tickets?", verbosity=2)
    assert output.strip().endswith("You have two tickets.")
    assert "-- step 0" in output and "call list_tickets" in output and "stopped by end_turn" in output
    assert len(fake_llm.tool_requests()) == 2
    assert fake_llm.tool_requests()[0]["model"] == "fake-model"


def test_agent_chat_reports_a_failed_run(actors, fake_llm):
    fake_llm.default = Error(400, message="bad request")
    with pytest.raises(CommandError, match="llm_error"):
        _chat("--org", "acme", "--customer", "zd-1", "--message", "Hello")


def test_agent_chat_unknown_org_or_customer(actors):
    with pytest.raises(CommandError, match="No organisation"):
        _chat("--org", "nope", "--customer", "zd-1", "--message", "Hi")
    with pytest.raises(CommandError, match="No customer"):
        _chat("--org", "globex", "--customer", "zd-2", "--message", "Hi")


def test_agent_chat_interactive(actors, offline, monkeypatch):
    answers = iter(["My order number is B-77.", ""])
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    output = _chat("--org", "acme", "--customer", "zd-1")
    assert "Order: B-77" in output and AgentRun.objects.count() == 1


@pytest.mark.parametrize("word", ["quit", "exit", " QUIT "])
def test_agent_chat_quit_ends_the_session_without_a_run(actors, offline, monkeypatch, word):
    answers = iter(["My order number is B-77.", word, "never sent"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    _chat("--org", "acme", "--customer", "zd-1")
    assert AgentRun.objects.count() == 1
    assert not TicketMessage.objects.filter(body__iexact=word.strip()).exists()
