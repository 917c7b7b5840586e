"""The model loading panel: a progress bar with size and speed while downloading, then loading."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, ProgressBar

from qwen3tui.engine.info import LoadProgress


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def describe_progress(p: LoadProgress, bytes_per_s: float | None) -> str:
    """One line for the panel: what is happening, how far, and how fast."""
    what = p.description or ("Downloading model" if p.stage == "download" else "Loading weights")
    if p.stage == "download":
        size = f"{human_bytes(p.done)} / {human_bytes(p.total)}" if p.total else human_bytes(p.done)
        speed = f" · {human_bytes(bytes_per_s)}/s" if bytes_per_s else ""
        return f"{what} · {size}{speed}"
    count = f"{p.done} / {p.total} tensors" if p.total else f"{p.done} tensors"
    return f"{what} · {count}"


class LoadProgressPanel(Vertical):
    """Shown above the composer until the engine is ready."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.label = Label("Starting…", id="load-label")
        self.bar = ProgressBar(total=None, show_eta=False, id="load-bar")
        self._speed_mark: tuple[float, int] | None = None  # (time, bytes) at the last speed update
        self._speed: float | None = None

    def compose(self) -> ComposeResult:
        yield self.label
        yield self.bar

    def show(self, p: LoadProgress, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if p.stage == "download":
            if self._speed_mark is None or p.done < self._speed_mark[1]:
                self._speed_mark = (now, p.done)
            elif now - self._speed_mark[0] >= 0.5:
                self._speed = (p.done - self._speed_mark[1]) / (now - self._speed_mark[0])
                self._speed_mark = (now, p.done)
        self.label.update(describe_progress(p, self._speed))
        self.bar.update(total=p.total or None, progress=p.done)
