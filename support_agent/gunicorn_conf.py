"""gunicorn's configuration for `make run` (`gunicorn -c python:support_agent.gunicorn_conf`).

The master prepares the service once (data folder, embedded database when DATABASE_URL is unset) before it
forks the workers, which inherit the exported DATABASE_URL. Prometheus samples go to files in
PROMETHEUS_MULTIPROC_DIR (by default `metrics/` in the data folder, emptied when the master starts), so that
/metrics answers the same totals from any worker.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from support_agent.bootstrap import service_prepare
from support_agent.env import data_dir_from_env, env_int

service_prepare()
if os.environ.get("SUPPORTMEM_EMBEDDINGS", "local") == "local":
    # Convert the int8 embedding model once, here, before the workers fork: a worker converting it in
    # post_worker_init could outlive gunicorn's boot timeout on a busy machine. The conversion runs in a child
    # process: a worker forked from a master that imported torch or onnxruntime aborts when it exits.
    import logging
    import multiprocessing

    from memory.onnx_embedder import model_file, model_path

    _models_dir = data_dir_from_env() / "models"
    try:
        if not model_file(_models_dir).exists():
            _converter = multiprocessing.get_context("spawn").Process(target=model_path, args=(_models_dir,))
            _converter.start()
            _converter.join()
            if _converter.exitcode != 0:
                raise RuntimeError(f"the conversion process exited with {_converter.exitcode}")
    except Exception as exc:  # a missing extra or a failed export: the server still serves full-text search
        logging.getLogger(__name__).warning("could not prepare the local embedding model: %s", exc)

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _metrics_dir = data_dir_from_env() / "metrics"
    shutil.rmtree(_metrics_dir, ignore_errors=True)  # samples of a previous run's dead processes
    _metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir)

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
worker_class = "gthread"
workers = env_int("WEB_CONCURRENCY", 2)
threads = env_int("SUPPORTMEM_WEB_THREADS", 8)
timeout = 120
accesslog = "-"


def child_exit(server: Any, worker: Any) -> None:
    """A dead worker's live gauges leave the totals; its counters stay (they count what happened)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker: Any) -> None:
    """Each worker loads the embedding model and the views before it takes requests, so the first reply is not the
    slow one, then freezes what it loaded so the collector's full passes stop walking it (``heap_freeze``)."""
    from support_agent.warmup import heap_freeze, service_warm_up

    service_warm_up()
    heap_freeze()
