"""The heartbeat loop against the real openai backend and a scripted server: chains, retries, limits."""

from __future__ import annotations

import json

from memory.models import MemoryBlock
from support_agent.models import AgentRun
from support_agent.services import agent_run
from tests.support_agent.fake_openai import tool_calls
from tests.support_agent.helpers import customer_says, tool_results
from tickets.models import TicketMessage


def test_heartbeat_chain_ends_in_send_message(actors, blocks, fake_llm):
    message = customer_says(
        actors.customer, "Did the firmware fix from last time stick? I use a Verifone P400.", actors.open_ticket
    )
    fake_llm.script = [
        tool_calls(("conversation_search", {"query": "firmware", "request_heartbeat": True})),
        tool_calls(
            ("core_memory_append", {"label": "customer", "content": "Uses a Verifone P400.", "request_heartbeat": True})
        ),
        tool_calls(
            (
                "archival_memory_insert",
                {"content": "Reader model: Verifone P400", "tags": ["hardware"], "request_heartbeat": True},
            )
        ),
        tool_calls(
            ("send_message", {"message": "Yes: firmware 4.2.3 fixed the sync bug.", "request_heartbeat": False})
        ),
    ]
    events = []
    run = agent_run(customer=actors.customer, trigger="message", message=message, on_event=events.append)

    run.refresh_from_db()
    assert (run.status, run.stop_reason, run.step_count) == ("completed", "end_turn", 4)
    assert run.model_name == "fake-model" and run.ticket == actors.open_ticket
    assert (run.prompt_tokens, run.completion_tokens) == (400, 40)
    # The reply is a stored agent message on the ticket, and on the run.
    reply = TicketMessage.objects.get(pk=run.reply_message_id)
    assert (reply.author_role, reply.ticket, reply.body) == ("agent", actors.open_ticket, run.reply)
    assert "4.2.3" in run.reply
    # The search in step 1 found the old staff message; the model saw it in step 2.
    found = tool_results(fake_llm.tool_requests()[1])[0]["result"]["results"]
    assert any("4.2.3" in row["text"] for row in found)
    # The memory edit links to its run, its step and the message that prompted it.
    block = MemoryBlock.objects.get(pk=blocks["customer"].pk)
    history = block.history.first()
    assert "Verifone P400" in block.value
    assert (history.change_source, history.agent_run_id, history.agent_step_id, history.prompting_message_id) == (
        "agent",
        run.pk,
        run.steps.get(index=1).pk,
        message.pk,
    )
    assert [e["type"] for e in events] == ["run_started", "step", "step", "step", "step", "reply", "run_finished"]
    assert events[2]["label"] == "Updating what I remember about you"
    step = run.steps.get(index=0)
    assert step.request_messages[0]["role"] == "system" and step.tool_results[0]["ok"]
    assert step.context_tokens > 0 and step.tool_calls[0]["name"] == "conversation_search"


def test_new_event_is_last_and_not_repeated(actors, blocks, fake_llm):
    message = customer_says(actors.customer, "Unique question about zebra invoices", actors.open_ticket)
    fake_llm.script = [tool_calls(("send_message", {"message": "ok", "request_heartbeat": False}))]
    agent_run(customer=actors.customer, trigger="message", message=message)
    sent = fake_llm.tool_requests()[0]["messages"]
    assert sent[-1]["role"] == "user" and "zebra invoices" in sent[-1]["content"]
    assert f'ticket #{actors.open_ticket.pk} "Charged twice for March"' in sent[-1]["content"]
    assert sum("zebra" in str(m["content"]) for m in sent) == 1
    assert "<open_issues" in sent[0]["content"] and "earlier messages in recall memory" in sent[0]["content"]


def test_failing_tool_then_retry(actors, blocks, fake_llm):
    message = customer_says(actors.customer, "Actually I prefer phone calls, not email.")
    fake_llm.script = [
        tool_calls(
            (
                "core_memory_replace",
                {
                    "label": "preferences",
                    "old_content": "email",
                    "new_content": "phone calls",
                    "request_heartbeat": False,
                },
            )
        ),
        tool_calls(
            (
                "core_memory_append",
                {"label": "preferences", "content": "Prefers phone calls.", "request_heartbeat": False},
            )
        ),
    ]
    run = agent_run(customer=actors.customer, trigger="message", message=message)
    run.refresh_from_db()
    # No heartbeat was asked for, but the failure earned the model a second step to fix it.
    assert (run.status, run.stop_reason, run.step_count) == ("completed", "end_turn", 2)
    error = tool_results(fake_llm.tool_requests()[1])[0]
    assert error["ok"] is False and "not found" in error["error"]
    assert run.steps.get(index=0).tool_results[0]["ok"] is False
    assert MemoryBlock.objects.get(pk=blocks["preferences"].pk).value == "Prefers phone calls."


def test_step_limit_stops_a_model_that_never_stops(actors, blocks, fake_llm):
    actors.org.step_limit = 3
    actors.org.save()
    fake_llm.default = lambda body: tool_calls(("list_tickets", {"status": None, "request_heartbeat": True}))
    run = agent_run(customer=actors.customer, trigger="manual", message=customer_says(actors.customer, "Hello?"))
    run.refresh_from_db()
    assert (run.status, run.stop_reason, run.step_count) == ("completed", "step_limit", 3)
    assert len(fake_llm.tool_requests()) == 3 and run.steps.count() == 3


def test_unknown_tool_and_malformed_json_are_errors_not_crashes(actors, blocks, fake_llm):
    message = customer_says(actors.customer, "Delete my account data.")
    fake_llm.script = [
        tool_calls(
            ("delete_everything", {"request_heartbeat": False}),
            ("conversation_search", '{"query": "account", "request_heartbeat": tru'),
            ("get_ticket", {"ticket_id": "not-a-number", "request_heartbeat": False}),
        ),
        tool_calls(("send_message", {"message": "I cannot do that here.", "request_heartbeat": False})),
    ]
    run = agent_run(customer=actors.customer, trigger="message", message=message)
    run.refresh_from_db()
    assert (run.status, run.stop_reason, run.step_count) == ("completed", "end_turn", 2)
    unknown, malformed, invalid = tool_results(fake_llm.tool_requests()[1])
    assert "Unknown tool 'delete_everything'" in unknown["error"]
    assert "not valid JSON" in malformed["error"]
    assert "ticket_id" in invalid["error"]
    assert run.reply == "I cannot do that here."


def test_tool_results_follow_their_call_in_the_next_request(actors, blocks, fake_llm):
    fake_llm.script = [
        tool_calls(("list_tickets", {"status": "open", "request_heartbeat": True})),
        tool_calls(("send_message", {"message": "You have one open ticket.", "request_heartbeat": False})),
    ]
    agent_run(customer=actors.customer, trigger="manual", message=customer_says(actors.customer, "Open tickets?"))
    second = fake_llm.tool_requests()[1]["messages"]
    call_index = next(i for i, m in enumerate(second) if m.get("tool_calls"))
    assert second[call_index + 1]["role"] == "tool"
    assert second[call_index + 1]["tool_call_id"] == second[call_index]["tool_calls"][0]["id"]
    listed = json.loads(second[call_index + 1]["content"])["result"]["tickets"]
    assert [t["subject"] for t in listed] == ["Charged twice for March"]


def test_plain_text_answer_is_delivered_and_ends_the_turn(actors, blocks, fake_llm):
    from tests.support_agent.fake_openai import text

    fake_llm.script = [text("Happy to help!")]
    run = agent_run(customer=actors.customer, trigger="manual", message=customer_says(actors.customer, "Hi"))
    run.refresh_from_db()
    assert (run.stop_reason, run.reply) == ("end_turn", "Happy to help!")
    assert AgentRun.objects.filter(customer=actors.customer).count() == 1


def test_a_failing_event_listener_does_not_fail_the_run(actors, blocks, fake_llm):
    def listener(event):
        raise ConnectionResetError("the browser went away")

    fake_llm.script = [tool_calls(("send_message", {"message": "Still delivered.", "request_heartbeat": False}))]
    run = agent_run(
        customer=actors.customer, trigger="manual", message=customer_says(actors.customer, "Hi"), on_event=listener
    )
    assert (run.status, run.reply) == ("completed", "Still delivered.")


def test_later_messages_wait_for_their_own_run(actors, blocks, fake_llm):
    first = customer_says(actors.customer, "First: about my invoice")
    customer_says(actors.customer, "Second: also my password")
    fake_llm.script = [tool_calls(("send_message", {"message": "About the invoice...", "request_heartbeat": False}))]
    agent_run(customer=actors.customer, trigger="message", message=first)
    sent = fake_llm.tool_requests()[0]["messages"]
    assert "First: about my invoice" in sent[-1]["content"]
    assert not any("Second: also my password" in str(m["content"]) for m in sent)
