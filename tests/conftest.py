"""Shared fixtures: where the real Qwen3 tokenizer files are, and tiny random checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def find_shared_dir() -> Path | None:
    """The folder with the real Qwen3-1.7B config, tokenizer and chat template (no weights)."""
    candidates = [
        os.environ.get("QWEN3TUI_SHARED_DIR"),
        REPO.parent / "shared" / "qwen3-1.7b",
        Path("/work/shared/qwen3-1.7b"),
    ]
    for c in candidates:
        if c and (Path(c) / "tokenizer.json").exists():
            return Path(c)
    return None


@pytest.fixture(scope="session", autouse=True)
def compile_each_kernel_once(tmp_path_factory: pytest.TempPathFactory):
    """CC for the whole session (subprocesses included): tests/cached_cc.py, which keeps each
    CPU kernel build, so a fresh QWEN3TUI_HOME does not compile the kernels again (seconds
    each). Tests that set CC themselves still get theirs."""
    import shutil
    import sys

    real = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not real:
        yield
        return
    cached = Path(__file__).resolve().parent / "cached_cc.py"
    wrapper = tmp_path_factory.mktemp("cc") / "cc"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{cached}" "$@"\n')
    wrapper.chmod(0o755)
    saved = {
        k: os.environ.get(k) for k in ("CC", "QWEN3TUI_TEST_REAL_CC", "QWEN3TUI_TEST_CC_CACHE")
    }
    os.environ["CC"] = str(wrapper)
    os.environ["QWEN3TUI_TEST_REAL_CC"] = real
    # One cache for the whole run: pytest-xdist's workers share their parent temp folder (the
    # wrapper's writes are atomic), so each kernel still compiles once.
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    kernels = root / "built-kernels"
    kernels.mkdir(exist_ok=True)
    os.environ["QWEN3TUI_TEST_CC_CACHE"] = str(kernels)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    found = find_shared_dir()
    if found is None:
        if os.environ.get("QWEN3TUI_REQUIRE_SHARED"):
            pytest.fail(
                "the real Qwen3 tokenizer files are required here (QWEN3TUI_REQUIRE_SHARED)"
                " but none were found; set QWEN3TUI_SHARED_DIR"
            )
        pytest.skip(
            "real Qwen3 tokenizer files not found (set QWEN3TUI_SHARED_DIR to a folder with"
            " tokenizer.json, tokenizer_config.json and config.json of Qwen/Qwen3-1.7B)"
        )
    return found


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path) -> Path:
    """A 2-layer Qwen3 with random float32 weights and the real tokenizer."""
    from qwen3tui.engine.random_checkpoint import write_random_checkpoint

    return write_random_checkpoint(tmp_path_factory.mktemp("tiny-qwen3"), tokenizer_dir=shared_dir)


@pytest.fixture
def qwen3tui_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point all of qwen3tui's data and config at a fresh folder."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("QWEN3TUI_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def reference(shared_dir: Path):
    """transformers' tokenizer (with the official chat template) for the shared folder: the
    test-only reference for our tokenizer and template."""
    transformers = pytest.importorskip("transformers")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        return transformers.AutoTokenizer.from_pretrained(str(shared_dir))
