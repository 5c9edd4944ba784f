"""One run at a time per customer: concurrent triggers queue behind a PostgreSQL advisory lock."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from support_agent.models import AgentRun
from support_agent.services import agent_run
from tests.support_agent.fake_openai import tool_calls
from tests.support_agent.helpers import customer_says
from tickets.models import Customer


def _run_in_thread(customer_id: int, message_id: int, errors: list[BaseException]) -> None:
    try:
        customer = Customer.objects.select_related("organization").get(pk=customer_id)
        message = customer.messages.get(pk=message_id)
        agent_run(customer=customer, trigger="message", message=message)
    except BaseException as exc:  # surfaced by the test thread
        errors.append(exc)
    finally:
        connection.close()  # each thread has its own database connection


@pytest.mark.django_db(transaction=True)
def test_two_runs_for_one_customer_execute_one_after_the_other(actors, blocks, fake_llm):
    fake_llm.delay = 0.3  # long enough that unserialised runs would overlap at the model
    fake_llm.default = lambda body: tool_calls(("send_message", {"message": "Answered.", "request_heartbeat": False}))
    first = customer_says(actors.customer, "First question")
    second = customer_says(actors.customer, "Second question")
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=_run_in_thread, args=(actors.customer.pk, m.pk, errors)) for m in (first, second)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    # (Building the actors solved a ticket, whose consolidation run committed first: only count these two.)
    runs = list(AgentRun.objects.filter(customer=actors.customer, trigger="message").order_by("started_at"))
    assert [run.status for run in runs] == ["completed", "completed"]
    assert runs[0].finished_at <= runs[1].started_at
    assert fake_llm.max_in_flight == 1 and len(fake_llm.tool_requests()) == 2


@pytest.mark.django_db(transaction=True)
def test_runs_for_different_customers_do_not_wait_for_each_other(actors, blocks, fake_llm):
    gate = threading.Barrier(2, timeout=60)

    def reply(body):
        gate.wait()  # both runs must be at the model at once, or this times out
        return tool_calls(("send_message", {"message": "Hi.", "request_heartbeat": False}))

    fake_llm.default = reply
    messages = [customer_says(actors.customer, "Hello"), customer_says(actors.other_customer, "Hello")]
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_run_in_thread, args=(m.customer_id, m.pk, errors)) for m in messages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert fake_llm.max_in_flight == 2
    assert set(AgentRun.objects.values_list("status", flat=True)) == {"completed"}
