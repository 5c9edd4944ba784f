"""Never lose an event: broker down during intake, a worker killed mid-task. Real redis-server, gunicorn and
Celery worker processes (with beat: the sweeper) against this test run's database."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from memory.models import MessageEmbedding
from support_agent.models import AgentRun
from tests.tickets.live_procs import (
    Proc,
    child_env,
    free_port,
    gunicorn_start,
    live_database_url,
    redis_start,
    wait_until,
    worker_start,
)
from tests.tickets.standard_sender import WHSEC, message_event, signed_headers
from tickets.models import Integration, Ticket, TicketMessage, WebhookEvent

# Real processes on a shared machine: allow more than the suite's default per-test timeout.
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(1500)]


@dataclass
class Stack:
    tmp: Path
    redis_port: int
    redis: Proc
    env: dict[str, str]
    web: Proc
    url: str
    workers: list[Proc]

    def send(self, n: int, **kwargs: str) -> int:
        body, msg_id = message_event(n, **kwargs)
        return httpx.post(self.url, content=body, headers=signed_headers(body, msg_id), timeout=60).status_code

    def logs(self) -> str:
        return "\n".join(proc.output() for proc in [self.web, *self.workers])


@pytest.fixture
def stack(tmp_path, actors):
    integration = Integration.objects.create(organization=actors.org, kind="standard", signing_secret=WHSEC)
    redis_port, web_port = free_port(), free_port()
    redis = redis_start(redis_port, tmp_path)
    env = child_env(redis_url=f"redis://127.0.0.1:{redis_port}/0", tmp=tmp_path)
    web = gunicorn_start(env, web_port, tmp_path)
    url = f"http://127.0.0.1:{web_port}/webhooks/standard/{integration.webhook_token}/"
    stack = Stack(tmp_path, redis_port, redis, env, web, url, [worker_start(env, tmp_path, "w1")])
    yield stack
    for proc in [*stack.workers, stack.web, stack.redis]:
        proc.stop()


def _processed(count: int) -> bool:
    return WebhookEvent.objects.filter(status=WebhookEvent.Status.PROCESSED).count() >= count


def test_broker_down_then_back_every_event_processed_without_a_manual_step(stack):
    stack.redis.stop()  # the broker is gone: intake must still accept and store
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(lambda n: stack.send(n, role="staff"), range(200)))
    assert statuses == [202] * 200
    assert WebhookEvent.objects.count() == 200
    assert WebhookEvent.objects.filter(status=WebhookEvent.Status.RECEIVED).count() == 200

    stack.redis = redis_start(stack.redis_port, stack.tmp)  # the broker returns; nobody touches anything else
    try:
        wait_until(lambda: _processed(200), timeout=300, what="200 processed events", interval=1)
    except AssertionError:
        raise AssertionError(stack.logs()) from None
    assert TicketMessage.objects.filter(ticket__integration__kind="standard").count() == 200
    assert Ticket.objects.filter(integration__kind="standard").count() == 200

    # Every message is embedded by the worker, and in batches: far fewer embedding tasks than messages.
    embedded = MessageEmbedding.objects.filter(message__ticket__integration__kind="standard")
    try:
        wait_until(lambda: embedded.count() == 200, timeout=300, what="200 message embeddings", interval=1)
    except AssertionError:
        raise AssertionError(stack.logs()) from None
    worker_log = stack.workers[0].log.read_text(errors="replace")
    batches = sum("memory.embed_queued[" in line and "received" in line for line in worker_log.splitlines())
    assert 1 <= batches <= 100, f"{batches} embedding tasks for 200 messages"
    assert "Task memory.embed_messages[" not in worker_log


def _blocked_backends() -> int:
    with psycopg.connect(live_database_url(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            " AND query LIKE '%tickets_ticket%FOR UPDATE%'"
        ).fetchone()
    return int(row[0]) if row else 0


def _run_finished(message: TicketMessage) -> bool:
    return AgentRun.objects.filter(trigger_message=message, status__in=["completed", "failed"]).exists()


def test_worker_killed_mid_task_processed_exactly_once_in_effect(stack):
    assert stack.send(1, ticket="kill-1", text="My jeans are the wrong size.") == 202
    wait_until(lambda: _processed(1), timeout=180, what="the first event")
    ticket = Ticket.objects.get(external_id="kill-1")
    first = TicketMessage.objects.get(external_id="m-1")
    # The first message's agent run writes to the ticket too: let it finish so the lock below stops only us.
    wait_until(lambda: _run_finished(first), timeout=180, what="the first agent run", interval=1)

    # Hold the ticket's row lock so the next event's processing stops inside its transaction.
    holder = psycopg.connect(live_database_url())
    holder.execute("SELECT id FROM tickets_ticket WHERE id = %s FOR UPDATE", [ticket.pk])
    assert stack.send(2, ticket="kill-1", text="Also my new address is 12 Birch Lane.") == 202
    wait_until(lambda: _blocked_backends() > 0, timeout=120, what="the worker to block mid-task")
    assert WebhookEvent.objects.get(delivery_key__startswith="msg_live_2_").attempts == 1  # claimed, in flight
    stack.workers[0].kill()  # SIGKILL: no cleanup, no acknowledgement
    holder.rollback()
    holder.close()

    second = WebhookEvent.objects.get(delivery_key__startswith="msg_live_2_")
    assert second.status == WebhookEvent.Status.RECEIVED  # the killed attempt left nothing behind
    assert not TicketMessage.objects.filter(external_id="m-2").exists()

    stack.workers.append(worker_start(stack.env, stack.tmp, "w2"))  # a fresh worker; its beat runs the sweeper
    try:
        wait_until(lambda: _processed(2), timeout=180, what="the interrupted event", interval=1)
        message = TicketMessage.objects.get(external_id="m-2")
        wait_until(lambda: _run_finished(message), timeout=180, what="the interrupted message's run", interval=1)
    except (AssertionError, TicketMessage.DoesNotExist):
        raise AssertionError(stack.logs()) from None
    second.refresh_from_db()
    assert second.attempts == 2
    assert TicketMessage.objects.filter(ticket=ticket, external_id="m-2").count() == 1
    assert AgentRun.objects.filter(trigger_message=message).count() == 1
    assert TicketMessage.objects.filter(ticket=ticket, author_role="customer").count() == 2
