"""gunicorn's master (support_agent/gunicorn_conf.py) must not load ONNX Runtime or torch before it forks its
workers: a worker forked from a process that imported onnxruntime aborts when it exits ("terminate called after
throwing an instance of 'std::system_error'"), which `make run` showed at every Ctrl-C."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from memory.onnx_embedder import model_file
from tests.tickets.live_procs import child_env

MASTER = textwrap.dedent(
    """
    import os, sys
    import support_agent.gunicorn_conf  # what gunicorn's master runs before it forks
    loaded = sorted(name for name in ("onnxruntime", "torch", "onnx") if name in sys.modules)
    print("master loaded:", loaded, flush=True)
    pid = os.fork()
    if pid == 0:  # a worker: loads the embedder's runtime, then exits as a worker does
        import onnxruntime  # noqa: F401
        sys.exit(0)
    _, status = os.waitpid(pid, 0)
    print("worker status:", status, flush=True)
    """
)


def test_a_worker_forked_by_the_master_exits_cleanly(tmp_path):
    env = child_env(redis_url="", tmp=tmp_path, SUPPORTMEM_EMBEDDINGS="local")
    # The model is "cached" (an empty file under its name), so the master does not convert it here.
    target = model_file(Path(env["SUPPORTMEM_DATA_DIR"]) / "models")
    target.parent.mkdir(parents=True)
    target.touch()
    done = subprocess.run(
        [sys.executable, "-c", MASTER],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "master loaded: []" in done.stdout, done.stdout
    assert "worker status: 0" in done.stdout, done.stdout + done.stderr
    assert "system_error" not in done.stderr
