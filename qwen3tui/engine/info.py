"""What a loaded engine tells its caller about itself (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass

from .thinking_mode import ThinkingMode

DEFAULT_MODEL = "Qwen/Qwen3-1.7B"


@dataclass(frozen=True)
class EngineInfo:
    model: str  # what the user asked for: a hub id or a directory
    path: str  # the local directory the weights were read from
    device: str  # "cpu", "cuda", "cuda:1", "mps"
    dtype: str  # "bfloat16", "float16", "float32"
    context_length: int  # KV cache size in tokens
    num_parameters: int
    quantize: str | None = None
    server: str | None = None  # a remote engine's API base URL (never with credentials)
    # From the chat template: "hybrid" (thinking on/off), "thinking" (always thinks),
    # "instruct" (never thinks); see engine/thinking_mode.py.
    thinking_mode: ThinkingMode = "hybrid"
    thinking_mode_note: str | None = None  # one line when the mode had to be assumed


@dataclass(frozen=True)
class LoadProgress:
    """Reported while a model downloads and loads."""

    stage: str  # "download" (units are bytes) or "load" (units are tensors)
    done: int
    total: int
    description: str = ""
