"""Embedding backends: local MiniLM from the packaged weights, OpenAI at 384 dimensions, one interface."""

from __future__ import annotations

import io
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from django.core.management import call_command

from memory.embeddings import (
    EmbeddingError,
    LocalEmbedder,
    OpenAIEmbedder,
    embedder_get,
    message_embedding_text,
    message_embeddings_compute,
    query_embed,
    vector_literals,
)
from memory.models import EMBEDDING_DIMENSIONS, MessageEmbedding
from tests.memory.fake_embedder import use_fake
from tests.memory.learned_pools import cosine
from tickets.models import Organization, TicketMessage


def test_local_minilm_loads_offline_once_per_process_and_embeds_meaning(settings, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the local embedder must not touch the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    settings.SUPPORTMEM_EMBEDDINGS = "local-torch"  # the float baseline; "local" is tested in test_onnx_embedder
    embedder = embedder_get()
    assert isinstance(embedder, LocalEmbedder) and embedder_get() is embedder
    assert embedder.name == "sentence-transformers/all-MiniLM-L6-v2"
    refund, money_back, printer = embedder.embed(
        ["I want a refund for the double charge", "Please give me my money back, I was billed twice", "Printer jam"]
    )
    assert len(refund) == EMBEDDING_DIMENSIONS
    assert abs(cosine(refund, refund) - 1) < 1e-4  # unit vectors: cosine is a dot product
    assert cosine(refund, money_back) > cosine(refund, printer) + 0.2
    assert query_embed("refund") == embedder.embed(["refund"])[0]


class _FakeEmbeddingsServer(BaseHTTPRequestHandler):
    """An OpenAI-compatible /v1/embeddings on loopback; answers in reverse order (the index decides)."""

    seen: ClassVar[list[dict]] = []
    status: ClassVar[int] = 200

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append(body)
        data = [
            {"object": "embedding", "index": i, "embedding": [float(i + 1)] + [0.0] * (EMBEDDING_DIMENSIONS - 1)}
            for i in range(len(body["input"]))
        ][::-1]
        payload = {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": 1, "total_tokens": 1},
        }
        if self.status != 200:
            payload = {"error": {"message": "boom", "type": "server_error"}}
        raw = json.dumps(payload).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


@pytest.fixture
def openai_server(settings):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeEmbeddingsServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _FakeEmbeddingsServer.seen = []
    _FakeEmbeddingsServer.status = 200
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_BASE_URL = f"http://127.0.0.1:{server.server_port}/v1"
    settings.SUPPORTMEM_LLM_MAX_RETRIES = 0
    yield _FakeEmbeddingsServer
    server.shutdown()


def test_openai_backend_asks_for_384_dimensions_and_keeps_order(openai_server):
    embedder = OpenAIEmbedder()
    vectors = embedder.embed(["first", "second"])
    (request,) = openai_server.seen
    assert request["model"] == "text-embedding-3-small" and request["dimensions"] == EMBEDDING_DIMENSIONS
    assert request["input"] == ["first", "second"]
    assert [v[0] for v in vectors] == [1.0, 1.0] and len(vectors[1]) == EMBEDDING_DIMENSIONS
    assert embedder.name == "openai/text-embedding-3-small@384"


def test_openai_failure_is_an_embedding_error(openai_server):
    openai_server.status = 500
    with pytest.raises(EmbeddingError):
        OpenAIEmbedder().embed(["x"])


def test_openai_backend_without_credentials_and_unknown_backend_fail_clearly(settings):
    settings.OPENAI_API_KEY = ""
    settings.OPENAI_BASE_URL = ""
    with pytest.raises(EmbeddingError, match="OPENAI_API_KEY"):
        OpenAIEmbedder()
    with pytest.raises(EmbeddingError, match="Unknown embedding backend"):
        embedder_get("nonsense")


def test_search_falls_back_to_full_text_when_the_query_cannot_be_embedded(actors, settings):
    from memory.embeddings import embedder_register
    from memory.selectors import message_search

    def broken():
        raise EmbeddingError("provider down")

    embedder_register("broken", broken)
    settings.SUPPORTMEM_EMBEDDINGS = "broken"
    results = message_search(customer=actors.customer, query="firmware").results
    # The firmware conversation, not the invoice: the reply holds the word, and the turn it answered (found through
    # its neighbour's words) comes first: it opens the conversation, states a time ("this morning") and its
    # conversation holds the best match (the learned ranking's opens, timed and peer text features).
    assert [m.body[:13] for m in results] == ["My card reade", "Please update"]


def test_a_query_embedding_that_fails_in_its_run_leaves_full_text_beside_kept_words(actors, settings):
    """The kept words are scored on another thread while this one runs the model; a model that fails then (not when
    it is made) leaves the search to full text, as when it cannot be made."""
    from memory import selectors
    from memory.embeddings import embedder_register, query_cache_clear

    class FailsWhenRun:
        name = "test/fails-when-run"

        def embed(self, texts):
            raise EmbeddingError("provider timed out")

    embedder_register("fails-when-run", FailsWhenRun)
    settings.SUPPORTMEM_EMBEDDINGS = "fails-when-run"
    query_cache_clear()
    assert selectors.POSTINGS_IN_PROCESS  # the path where the words are scored beside the model's run
    results = selectors.message_search(customer=actors.customer, query="firmware").results
    assert [m.body[:13] for m in results] == ["My card reade", "Please update"]


def test_a_prepared_query_embedding_is_the_query_embedding_and_is_cached(settings):
    from memory.embeddings import query_cache_clear, query_embed_prepare

    fake = use_fake(settings)
    query_cache_clear()
    finish = query_embed_prepare("refund for a double charge")
    assert fake.calls == []  # nothing embedded until the run is asked for
    vector = finish()
    assert vector == fake.embed(["refund for a double charge"])[0]
    fake.calls.clear()
    assert query_embed("refund for a double charge") == vector and fake.calls == []  # cached
    assert query_embed_prepare("refund for a double charge")() == vector and fake.calls == []


def test_message_embedding_text_names_the_author(actors):
    message = TicketMessage.objects.filter(customer=actors.customer).first()
    message.author_name = "Dana"
    assert message_embedding_text(message) == f"Dana: {message.body}"


def test_bulk_embeddings_are_stored_within_float32_resolution_of_the_model_output(actors, settings):
    fake = use_fake(settings)
    messages = list(TicketMessage.objects.filter(customer=actors.customer).order_by("created_at", "id"))
    assert message_embeddings_compute(message_ids=[m.pk for m in messages]) == len(messages)
    for message in messages:
        stored = list(MessageEmbedding.objects.get(message=message).embedding)
        wanted = fake.embed([message_embedding_text(message)])[0]
        assert max(abs(a - b) for a, b in zip(stored, wanted, strict=True)) < 1e-7
    literal = vector_literals([[0.5, -0.0123456789, 1e-12, -1.0]])[0].to_text()
    assert literal == "[500000000e-9,-12345679e-9,0e-9,-1000000000e-9]"


def test_demo_seed_embeds_the_demo_history(db, settings, django_capture_on_commit_callbacks):
    fake = use_fake(settings)
    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo", stdout=io.StringIO())
    demo = Organization.objects.get()
    messages = TicketMessage.objects.filter(organization=demo).count()
    assert messages > 0
    assert MessageEmbedding.objects.filter(organization=demo, model=fake.name).count() == messages
