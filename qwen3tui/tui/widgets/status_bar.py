"""The status line: model, device, dtype, context used/available, tok/s and TTFT.

It always fits one line: where the terminal is narrow, the parts that matter least go first
(TTFT, dtype, device, the thinking mode, ...), so what is left is never cut mid-word.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from rich.cells import cell_len
from rich.text import Text
from textual.widget import Widget

WIDE_GAP = "  │  "
NARROW_GAP = " │ "


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


def short_count(n: int) -> str:
    """1,204 -> "1.2k", 32,768 -> "32k": for a narrow status line."""
    if n < 1000:
        return str(n)
    if n < 10_000:
        return f"{n // 100 / 10:.1f}k"
    return f"{n // 1000}k"


# What a narrow line leaves out, least useful first. Each step drops one more part.
_DROP_ORDER = ("ttft", "dtype", "gap", "device", "mode", "numbers", "tok_s", "context")


def _parts(info: StatusInfo, dropped: frozenset[str]) -> list[str]:
    name = short_model_name(info.model) if info.model else "qwen3tui"
    parts = [f"{name} · {info.mode}" if info.mode and "mode" not in dropped else name]
    if info.device and "device" not in dropped:
        dtype = f"{info.dtype}+{info.quantize}" if info.quantize else info.dtype
        if dtype and "dtype" not in dropped:
            parts.append(f"{info.device} · {dtype}")
        else:
            parts.append(info.device)
    if info.context_length and "context" not in dropped:
        if "numbers" in dropped:
            used = "–" if info.context_used is None else short_count(info.context_used)
            parts.append(f"ctx {used}/{short_count(info.context_length)}")
        else:
            used = "–" if info.context_used is None else f"{info.context_used:,}"
            parts.append(f"ctx {used} / {info.context_length:,}")
    if info.tok_s is not None and "tok_s" not in dropped:
        parts.append(f"{info.tok_s:.1f} tok/s")
    if info.ttft_s is not None and "ttft" not in dropped:
        parts.append(f"TTFT {info.ttft_s:.2f} s")
    if info.state:
        parts.append(info.state)
    return parts


def _variants(info: StatusInfo) -> Iterator[str]:
    """The line in full, then with one more part left out each time."""
    dropped: frozenset[str] = frozenset()
    for step in (None, *_DROP_ORDER):
        if step is not None:
            dropped |= {step}
        gap = NARROW_GAP if "gap" in dropped else WIDE_GAP
        yield gap.join(_parts(info, dropped))


def format_status(info: StatusInfo, width: int | None = None) -> str:
    """The status line, as much of it as fits `width` cells (all of it when None)."""
    line = ""
    for line in _variants(info):
        if width is None or cell_len(line) <= width:
            return line
    # Not even the model name and the state fit: cut, and say so with an ellipsis.
    return _cut(line, max(width, 1))


def _cut(line: str, width: int) -> str:
    text = Text(line)
    text.truncate(width, overflow="ellipsis")
    return text.plain


class StatusBar(Widget):
    """One line at the top of the chat screen, redrawn to fit its width."""

    DEFAULT_CSS = """
    StatusBar {
        height: 1;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.info = StatusInfo()

    def set(self, **changes: object) -> None:
        self.info = replace(self.info, **changes)  # type: ignore[arg-type]
        self.refresh()

    def render(self) -> Text:
        width = self.content_size.width
        return Text(format_status(self.info, width if width > 0 else None), no_wrap=True, end="")
