"""The qwen3tui inference core: Qwen3 in plain PyTorch.

Importing this package does not import torch; `load_engine` does. The UI relies on that to
show its window at once and to keep torch out of its own layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .chat_engine import ChatEngine
from .errors import (
    ContextOverflowError,
    DeviceError,
    EngineError,
    InvalidOptionError,
    ModelLoadError,
    ModelNotFoundError,
)
from .events import (
    AnswerDelta,
    ContextNotice,
    Event,
    Summary,
    ThinkingDelta,
    ThinkingDone,
    Timings,
    Usage,
)
from .info import DEFAULT_MODEL, EngineInfo, LoadProgress
from .options import ChatOptions, SamplingOverrides, SamplingParams
from .thinking_mode import (
    ThinkingMode,
    resolve_thinking,
    thinking_mode_label,
    thinking_switch_note,
)

if TYPE_CHECKING:
    from .engine import Engine

__all__ = [
    "ChatEngine",
    "DEFAULT_MODEL",
    "AnswerDelta",
    "ChatOptions",
    "ContextNotice",
    "ContextOverflowError",
    "DeviceError",
    "Engine",
    "EngineError",
    "EngineInfo",
    "Event",
    "InvalidOptionError",
    "LoadProgress",
    "ModelLoadError",
    "ModelNotFoundError",
    "SamplingOverrides",
    "SamplingParams",
    "Summary",
    "ThinkingMode",
    "ThinkingDelta",
    "ThinkingDone",
    "Timings",
    "Usage",
    "load_engine",
    "resolve_thinking",
    "thinking_mode_label",
    "thinking_switch_note",
]


def load_engine(
    model: str = DEFAULT_MODEL,
    *,
    device: str = "auto",
    dtype: str = "auto",
    context_length: int | None = None,
    quantize: str | None = None,
    progress: Callable[[LoadProgress], None] | None = None,
) -> Engine:
    """Resolve, download if needed, and load a Qwen3 checkpoint. Raises EngineError on bad input."""
    from .engine import Engine

    return Engine.load(
        model,
        device=device,
        dtype=dtype,
        context_length=context_length,
        quantize=quantize,
        progress=progress,
    )
