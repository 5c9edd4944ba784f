"""Live embedding is batched: ids that arrive within the window wait in Redis and one task embeds them together.

A redis-server of the test's own holds the queue; the task is called the way a worker calls it.
"""

from __future__ import annotations

import pytest
from celery import current_app

from memory import tasks
from memory.embeddings import EmbeddingError
from memory.models import MessageEmbedding
from tests.memory.fake_embedder import use_fake
from tests.tickets.live_procs import free_port, redis_start
from tickets.services import message_ingest


@pytest.fixture
def queue(tmp_path, settings, monkeypatch):
    port = free_port()
    server = redis_start(port, tmp_path)
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    monkeypatch.setitem(current_app.conf, "task_always_eager", False)  # as in a deployment with a broker
    scheduled = []
    dispatch = tasks.dispatch

    def recording(task, *args, **kwargs):  # a spy: the task is still published (to the in-process broker)
        if task is tasks.embed_queued_task:
            scheduled.append({"args": args, **kwargs})
        return dispatch(task, *args, **kwargs)

    monkeypatch.setattr(tasks, "dispatch", recording)
    yield scheduled
    tasks._CLIENTS.clear()
    server.stop()


def _messages(actors, count):
    return [
        message_ingest(customer=actors.customer, body=f"router question {i}", author_role="customer", announce=False)[0]
        for i in range(count)
    ]


def test_ids_of_one_window_are_embedded_by_one_task_in_one_call(actors, settings, queue):
    fake = use_fake(settings)
    messages = _messages(actors, 5)
    for message in messages:  # five commits, five announcements
        tasks.embeddings_enqueue("messages", [message.pk])
    assert len(queue) == 1  # one task for the window
    assert queue[0]["args"] == ("messages",) and queue[0]["countdown"] == tasks.EMBED_BATCH_WINDOW
    assert not MessageEmbedding.objects.exists()  # nothing is embedded on the caller's thread

    assert tasks.embed_queued_task.run("messages") == 5
    assert fake.calls == [[f"router question {i}" for i in range(5)]]  # one model call
    assert MessageEmbedding.objects.filter(message__in=messages, model=fake.name).count() == 5

    tasks.embeddings_enqueue("messages", [messages[0].pk])  # the next window schedules a new task
    assert len(queue) == 2


def test_a_failed_batch_goes_back_on_the_queue(actors, settings, queue):
    fake = use_fake(settings)
    messages = _messages(actors, 3)
    tasks.embeddings_enqueue("messages", [m.pk for m in messages])

    def down(texts):
        raise EmbeddingError("provider down")

    working, fake.embed = fake.embed, down
    with pytest.raises(EmbeddingError):
        tasks.embed_queued_task.run("messages")
    assert not MessageEmbedding.objects.exists()
    fake.embed = working  # the provider is back: the retry finds every id still queued
    assert tasks.embed_queued_task.run("messages") == 3


def test_without_a_broker_rows_are_embedded_at_once(actors, settings):
    fake = use_fake(settings)
    settings.REDIS_URL = ""
    (message,) = _messages(actors, 1)
    tasks.embeddings_enqueue("messages", [message.pk])
    assert MessageEmbedding.objects.filter(message=message, model=fake.name).exists()


def test_redis_down_is_logged_not_raised(actors, settings, monkeypatch, caplog):
    use_fake(settings)
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    monkeypatch.setitem(current_app.conf, "task_always_eager", False)
    (message,) = _messages(actors, 1)
    tasks.embeddings_enqueue("messages", [message.pk])  # the message is stored; the sweeper embeds it later
    assert "embed_pending will pick them up" in caplog.text
    tasks._CLIENTS.clear()


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown embedding kind"):
        tasks.embeddings_enqueue("tickets", [1])
