"""The layer contract in pyproject.toml (support_agent > memory > tickets > telemetry) holds for the project and
fails on an upward import, a lazy one inside a function included."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _contract() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def _lint(cwd: Path, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    args = [str(LINT_IMPORTS), "--no-cache"] + (["--config", str(config)] if config else [])
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, env={"PYTHONPATH": str(cwd)}, timeout=120)


def test_the_project_keeps_its_layers():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_a_lazy_upward_import_breaks_the_contract(tmp_path):
    config = _contract()
    for package in config["root_packages"]:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    # The tickets layer reaching up to the agent inside a function body: what the contract exists to stop.
    (tmp_path / "tickets" / "outbound.py").write_text(
        "def reply() -> None:\n    from support_agent.agent import run_loop  # noqa\n"
    )
    (tmp_path / "support_agent" / "agent.py").write_text("def run_loop() -> None: ...\n")
    (tmp_path / "support_agent" / "tools.py").write_text("from memory.selectors import search  # noqa\n")
    (tmp_path / "memory" / "selectors.py").write_text("from tickets.outbound import reply  # noqa\ndef search(): ...\n")
    contract = config["contracts"][0]
    ini = tmp_path / ".importlinter"
    ini.write_text(
        "[importlinter]\nroot_packages =\n"
        + "".join(f"    {p}\n" for p in config["root_packages"])
        + f"\n[importlinter:contract:{contract['id']}]\nname = {contract['name']}\n"
        + f"type = {contract['type']}\nlayers =\n"
        + "".join(f"    {layer}\n" for layer in contract["layers"])
    )
    result = _lint(tmp_path, ini)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "0 kept, 1 broken" in result.stdout
    assert "tickets.outbound -> support_agent.agent" in result.stdout
