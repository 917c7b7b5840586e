"""Everything qwen3tui imports at run time is declared in pyproject.toml."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Imported only where they exist, and never required: Triton ships inside CUDA builds of torch.
NOT_DECLARED_ON_PURPOSE = {"triton"}
# Needed without being imported by name: torch warns at import without numpy, and
# safetensors.torch.save_file (random checkpoints) imports it.
NEEDED_INDIRECTLY = {"numpy"}


def declared() -> set[str]:
    text = (ROOT / "pyproject.toml").read_text()
    block = text.split("dependencies = [", 1)[1].split("]", 1)[0]
    names = re.findall(r'"([A-Za-z0-9_.-]+)', block)
    return {n.lower().replace("-", "_") for n in names}


def imported() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "qwen3tui").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m != "qwen3tui"}


def test_every_third_party_module_the_package_imports_is_declared() -> None:
    missing = imported() - declared() - NOT_DECLARED_ON_PURPOSE
    assert not missing, f"imported but not in [project] dependencies: {sorted(missing)}"


def test_what_is_needed_without_an_import_is_declared_too() -> None:
    assert NEEDED_INDIRECTLY <= declared()


def test_transformers_stays_a_test_only_reference() -> None:
    assert "transformers" not in imported() and "transformers" not in declared()
