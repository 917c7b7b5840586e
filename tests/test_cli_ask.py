"""`qwen3tui ask`: streaming, --json, one-line errors for bad input. Streaming, an offline hub
and one broken model run as real processes (the entry point, exit codes, what reaches stderr);
the rest through `cli.main` in this process (tests/cli_helpers.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import ask

from qwen3tui.engine.random_checkpoint import TINY_CONFIG


def qwen3tui(*args: str, env: dict | None = None, stdin: str | None = None, home: Path):
    full_env = {**os.environ, "QWEN3TUI_HOME": str(home), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "qwen3tui", *args],
        capture_output=True,
        text=True,
        env=full_env,
        input=stdin,
        timeout=300,
    )


def test_ask_json_reports_the_whole_reply(tiny_checkpoint, tmp_path):
    run = ask(
        "--model", str(tiny_checkpoint), "--dtype", "float32", "--json", "--no-save",
        "--budget", "5", "--max-new-tokens", "20", "--temperature", "1", "--seed", "7", "Hello?",
        home=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["finish_reason"] == "length" and out["thinking_budget_hit"] is True
    assert out["usage"]["thinking_tokens"] == 5
    assert out["usage"]["thinking_tokens"] + out["usage"]["answer_tokens"] == 20
    assert "Considering the limited time" in out["thinking"]
    # token_ids has every generated id: 20 sampled plus the budget's injected text.
    assert len(out["token_ids"]) > 20
    assert set(out["timings"]) >= {"ttft_s", "prefill_tok_s", "decode_tok_s"}
    assert out["session_id"] is None


def test_ask_streams_answer_to_stdout_and_thinking_to_stderr(tiny_checkpoint, tmp_path):
    run = qwen3tui(
        "ask", "--model", str(tiny_checkpoint), "--dtype", "float32", "--no-save", "--budget", "4",
        "--max-new-tokens", "12", "--seed", "1",
        home=tmp_path, stdin="question from stdin",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Considering the limited time" in run.stderr
    assert "Considering the limited time" not in run.stdout
    assert run.stdout.strip()


def break_weights(path: Path) -> None:
    (path / "model.safetensors").write_bytes(b"\x00garbage, not a safetensors file" * 10)


def weightless(path: Path) -> None:
    (path / "model.safetensors").unlink()


def other_architecture(path: Path) -> None:
    config = {**TINY_CONFIG, "model_type": "llama", "architectures": ["LlamaForCausalLM"]}
    (path / "config.json").write_text(json.dumps(config))


BROKEN = {
    "corrupt safetensors": (break_weights, "corrupt"),
    "no weights": (weightless, "no weights"),
    "other architecture": (other_architecture, "not a Qwen3 model"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_model_directory_is_one_line_and_exit_2(case, tiny_checkpoint, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, model)
    damage, words = BROKEN[case]
    damage(model)
    run = ask("--model", str(model), "--no-save", "hi", home=tmp_path)
    assert_one_line_error(run, words)


def test_a_broken_model_is_one_line_and_exit_2_from_the_real_entry_point(tiny_checkpoint, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, model)
    break_weights(model)
    run = qwen3tui("ask", "--model", str(model), "--no-save", "hi", home=tmp_path)
    assert_one_line_error(run, "corrupt")


def test_missing_directory(tmp_path):
    run = ask("--model", str(tmp_path / "nope"), "--no-save", "hi", home=tmp_path)
    assert_one_line_error(run, "does not exist")


def test_offline_machine_asking_for_an_uncached_hub_id(tmp_path):
    # A real process: huggingface_hub reads HF_HUB_OFFLINE and HF_HOME when it is imported.
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    run = qwen3tui("ask", "--model", "Qwen/Qwen3-0.6B", "--no-save", "hi", env=env, home=tmp_path)
    assert_one_line_error(run, "not in the local Hugging Face cache")


def test_unknown_device(tiny_checkpoint, tmp_path):
    run = ask("--model", str(tiny_checkpoint), "--device", "tpu", "--no-save", "hi",
              home=tmp_path)  # fmt: skip
    assert_one_line_error(run, "unknown device 'tpu'")


def test_fp8_quantization_off_cuda_is_one_line(tiny_checkpoint, tmp_path):
    run = ask("--model", str(tiny_checkpoint), "--device", "cpu", "--quantize", "fp8",
              "--no-save", "hi", home=tmp_path)  # fmt: skip
    assert_one_line_error(run, "--quantize fp8 needs a CUDA GPU")


def assert_one_line_error(run, words: str) -> None:
    assert run.returncode == 2, (run.stdout, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("qwen3tui: ") and words in lines[0], lines[0]
    assert "Traceback" not in run.stderr
