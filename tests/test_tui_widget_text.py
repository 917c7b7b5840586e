"""What the chat widgets say: pane titles, the status line, load progress, prompt history."""

from __future__ import annotations

from qwen3tui.engine.info import LoadProgress
from qwen3tui.store import Outcome
from qwen3tui.tui.widgets.chat_message import reply_meta
from qwen3tui.tui.widgets.composer import PromptHistory
from qwen3tui.tui.widgets.load_progress import describe_progress, human_bytes
from qwen3tui.tui.widgets.status_bar import StatusInfo, format_status, short_model_name
from qwen3tui.tui.widgets.thinking_pane import thinking_title, thought_title


def test_thinking_pane_titles() -> None:
    assert thinking_title(312, 1024) == "Thinking… 312 / 1024"
    assert thinking_title(312, None) == "Thinking… 312"
    assert thought_title(4.21, 812, False) == "Thought for 4.2 s · 812 tokens"
    assert thought_title(4.2, 1024, True) == "Thought for 4.2 s · 1024 tokens · budget reached"
    assert thought_title(0.5, 1, False) == "Thought for 0.5 s · 1 token"


def test_status_line_shows_model_device_context_speed_and_ttft() -> None:
    info = StatusInfo(
        model="Qwen/Qwen3-1.7B",
        device="cuda",
        dtype="bfloat16",
        context_used=1234,
        context_length=32768,
        tok_s=87.25,
        ttft_s=0.123,
    )
    assert format_status(info) == (
        "Qwen3-1.7B  │  cuda · bfloat16  │  ctx 1,234 / 32,768  │  87.2 tok/s  │  TTFT 0.12 s"
    )
    assert "int8" in format_status(
        StatusInfo(model="m", device="cpu", dtype="float32", quantize="int8")
    )
    assert format_status(StatusInfo(model="m", state="loading model…")) == "m  │  loading model…"
    assert short_model_name("/home/me/models/my-qwen/") == "my-qwen"


def test_load_progress_reads_as_size_and_speed() -> None:
    p = LoadProgress("download", 1_500_000_000, 3_400_000_000, "model.safetensors")
    assert describe_progress(p, 45_300_000) == "model.safetensors · 1.5 GB / 3.4 GB · 45.3 MB/s"
    assert (
        describe_progress(LoadProgress("load", 3, 310), None) == "Loading weights · 3 / 310 tensors"
    )
    assert human_bytes(999) == "999 B"
    assert describe_progress(LoadProgress("download", 0, 0), None) == "Downloading model · 0 B"


def test_reply_meta_says_how_a_reply_ended() -> None:
    assert (
        reply_meta(Outcome.CANCELLED, answer_tokens=12, decode_tok_s=30.0)
        == "stopped · 12 tokens · 30.0 tok/s"
    )
    assert reply_meta(Outcome.ERROR, error="out of memory") == "failed · out of memory"
    assert reply_meta(Outcome.COMPLETE) == ""
    assert reply_meta(Outcome.LENGTH, answer_tokens=3) == "cut off (max tokens) · 3 tokens"
    assert reply_meta(Outcome.INTERRUPTED) == "interrupted"


def test_prompt_history_walks_older_then_newer_back_to_empty() -> None:
    h = PromptHistory()
    for p in ["one", "two", "two", "three"]:
        h.add(p)
    assert h.entries == ["one", "two", "three"]  # repeats are not stored twice
    assert [h.older(), h.older(), h.older(), h.older()] == ["three", "two", "one", "one"]
    assert [h.newer(), h.newer(), h.newer()] == ["two", "three", ""]
    assert h.newer() is None  # no longer browsing
