"""The layer rules and "no import cycles", kept by import-linter's contracts in pyproject.toml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# import-linter's command, installed beside this Python (the test extra has it).
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LINT_IMPORTS, "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(root)},
    )


def test_every_contract_is_kept() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 4 kept, 0 broken." in done.stdout


def test_a_new_cycle_or_a_torch_import_in_the_ui_breaks_a_contract(tmp_path: Path) -> None:
    copy = tmp_path / "tree"
    copy.mkdir()
    shutil.copy(ROOT / "pyproject.toml", copy)
    shutil.copytree(ROOT / "qwen3tui", copy / "qwen3tui", ignore=shutil.ignore_patterns("*.pyc"))
    with open(copy / "qwen3tui" / "ask.py", "a") as ask:  # cli imports ask: now a cycle
        ask.write("\nimport qwen3tui.cli  # noqa\n")
    (copy / "qwen3tui" / "tui" / "sneaky.py").write_text("import torch  # noqa\n")
    (copy / "qwen3tui" / "store" / "peek.py").write_text("import qwen3tui.engine  # noqa\n")
    done = lint_imports(copy)
    assert done.returncode != 0
    assert "Contracts: 1 kept, 3 broken." in done.stdout
    assert "- .cli -> .ask (1 import)" in done.stdout
    assert "qwen3tui.tui.sneaky -> torch" in done.stdout
    assert "qwen3tui.store.peek -> qwen3tui.engine" in done.stdout
