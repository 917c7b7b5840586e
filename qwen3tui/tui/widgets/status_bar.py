"""The status line: model, device, dtype, context used/available, last tok/s and TTFT."""

from __future__ import annotations

from dataclasses import dataclass, replace

from textual.widgets import Static


@dataclass(frozen=True)
class StatusInfo:
    model: str = ""
    mode: str = ""  # the model's thinking mode, in words ("hybrid thinking", …)
    device: str = ""
    dtype: str = ""
    quantize: str | None = None
    context_used: int | None = None
    context_length: int | None = None
    tok_s: float | None = None
    ttft_s: float | None = None
    state: str = ""  # "loading model…", "generating", "" when idle


def short_model_name(model: str) -> str:
    """Hub ids keep their name part; local paths show their last folder."""
    stripped = model.rstrip("/\\")
    return stripped.replace("\\", "/").rsplit("/", 1)[-1] or model


def format_status(info: StatusInfo) -> str:
    name = short_model_name(info.model) if info.model else "qwen3tui"
    parts = [f"{name} · {info.mode}" if info.mode else name]
    if info.device:
        dtype = f"{info.dtype}+{info.quantize}" if info.quantize else info.dtype
        parts.append(f"{info.device} · {dtype}" if dtype else info.device)
    if info.context_length:
        used = "–" if info.context_used is None else f"{info.context_used:,}"
        parts.append(f"ctx {used} / {info.context_length:,}")
    if info.tok_s is not None:
        parts.append(f"{info.tok_s:.1f} tok/s")
    if info.ttft_s is not None:
        parts.append(f"TTFT {info.ttft_s:.2f} s")
    if info.state:
        parts.append(info.state)
    return "  │  ".join(parts)


class StatusBar(Static):
    """One line at the top of the chat screen."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", markup=False, id=id)
        self.info = StatusInfo()

    def set(self, **changes: object) -> None:
        self.info = replace(self.info, **changes)  # type: ignore[arg-type]
        self.update(format_status(self.info))
