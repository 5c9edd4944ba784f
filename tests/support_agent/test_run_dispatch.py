"""A customer message is never left unanswered because the broker was down: the run is recorded first, and the
re-queue sweep starts what was never picked up, once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerDown

from support_agent import tasks
from support_agent.models import AgentRun
from support_agent.services import agent_run_queue
from tests.memory.fake_embedder import use_fake
from tickets.models import TicketMessage
from tickets.services import message_ingest


@pytest.fixture
def broker(monkeypatch):
    """The broker boundary: ``up`` False makes publishing fail the way kombu does when Redis is gone."""

    class Broker:
        up = True

    state = Broker()
    publish = tasks.agent_run_queued_task.apply_async

    def apply_async(*args, **kwargs):
        if not state.up:
            raise BrokerDown("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        return publish(*args, **kwargs)

    monkeypatch.setattr(tasks.agent_run_queued_task, "apply_async", apply_async)
    return state


def _agent_replies(actors):
    return TicketMessage.objects.filter(customer=actors.customer, author_role=TicketMessage.Role.AGENT)


def test_broker_down_at_commit_leaves_a_queued_run_that_the_sweep_starts(
    actors, offline, settings, broker, django_capture_on_commit_callbacks
):
    use_fake(settings)
    replies_before = _agent_replies(actors).count()
    broker.up = False
    with django_capture_on_commit_callbacks(execute=True):
        message, _ = message_ingest(
            customer=actors.customer, ticket=actors.open_ticket, body="Is my refund through?", author_role="customer"
        )
    run = AgentRun.objects.get(trigger_message=message)
    assert run.status == AgentRun.Status.QUEUED and run.picked_at is None
    assert _agent_replies(actors).count() == replies_before  # nobody answered yet

    broker.up = True
    assert tasks.agent_runs_requeue_task() == 0  # too young: its task may still be on its way
    AgentRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    assert tasks.agent_runs_requeue_task() == 1
    run.refresh_from_db()
    assert run.status == AgentRun.Status.COMPLETED and run.picked_at is not None
    assert _agent_replies(actors).count() == replies_before + 1
    assert tasks.agent_runs_requeue_task() == 0  # done: never again


def test_a_run_queued_twice_is_executed_once(actors, offline, settings):
    use_fake(settings)
    message, _ = message_ingest(
        customer=actors.customer, ticket=actors.open_ticket, body="Hello?", author_role="customer", announce=False
    )
    run = agent_run_queue(customer=actors.customer, trigger=AgentRun.Trigger.MESSAGE, message=message)
    replies_before = _agent_replies(actors).count()
    assert tasks.agent_run_queued_task(run.pk) == run.pk
    assert tasks.agent_run_queued_task(run.pk) is None  # the duplicate finds it taken
    assert _agent_replies(actors).count() == replies_before + 1
    assert tasks.agent_run_queued_task(999_999) is None  # a run that is gone


def test_a_stalled_pick_is_released_and_day_old_runs_are_left_alone(actors, offline, settings):
    use_fake(settings)
    now = timezone.now()
    stalled = agent_run_queue(
        customer=actors.customer, trigger=AgentRun.Trigger.CONSOLIDATION, ticket=actors.solved_ticket
    )
    AgentRun.objects.filter(pk=stalled.pk).update(
        created_at=now - timedelta(hours=3),
        picked_at=now - timedelta(hours=2),  # its worker died in the lock wait
    )
    ancient = agent_run_queue(customer=actors.other_customer, trigger=AgentRun.Trigger.MANUAL)
    AgentRun.objects.filter(pk=ancient.pk).update(created_at=now - timedelta(days=2))

    assert tasks.agent_runs_requeue_task() == 1
    stalled.refresh_from_db()
    ancient.refresh_from_db()
    assert stalled.status == AgentRun.Status.COMPLETED
    assert ancient.status == AgentRun.Status.QUEUED and ancient.picked_at is None


def test_direct_runs_are_never_picked_up_by_the_sweep(actors, offline, settings):
    use_fake(settings)
    from support_agent.services import agent_run

    run = agent_run(customer=actors.customer, trigger=AgentRun.Trigger.MANUAL)
    assert run.picked_at is not None and run.status == AgentRun.Status.COMPLETED
