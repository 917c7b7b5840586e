"""The numbers the status bar shows while a reply streams, read from the stream itself.

The engine's exact figures (its `Summary`) come only when a reply ends; until then the context
used is the prompt (counted when the message is sent) plus the tokens streamed so far, and the
speed is the tokens since the first one over the time since it arrived.
"""

from __future__ import annotations

from collections.abc import Iterable
from time import monotonic

from qwen3tui.engine.events import AnswerDelta, Summary, ThinkingDelta, ThinkingDone

MIN_RATE_WINDOW_S = 0.25  # a speed measured over less time than this is mostly noise


class LiveStats:
    """Counts one reply's tokens as they reach the UI."""

    def __init__(self) -> None:
        self.prompt_tokens: int | None = None  # set when the prompt has been counted
        self.thinking_tokens = 0
        self.answer_tokens = 0  # one answer delta per token, as the engines stream them
        self.tok_s: float | None = None
        self.ended = False  # the engine's Summary came: its numbers replace these
        self._first: tuple[float, int] | None = None  # (when, tokens) at the first token

    @property
    def generated(self) -> int:
        return self.thinking_tokens + self.answer_tokens

    @property
    def context_used(self) -> int | None:
        return None if self.prompt_tokens is None else self.prompt_tokens + self.generated

    def observe(self, items: Iterable[object]) -> bool:
        """Count the tokens in a batch taken from the stream (before deltas are merged).
        True when the numbers to show changed."""
        before = self.generated
        for item in items:
            if isinstance(item, ThinkingDelta | ThinkingDone):
                self.thinking_tokens = max(self.thinking_tokens, item.thinking_tokens)
            elif isinstance(item, AnswerDelta):
                self.answer_tokens += 1
            elif isinstance(item, Summary):
                self.ended = True
        if self.ended or self.generated == before:
            return False
        now = monotonic()
        if self._first is None:
            self._first = (now, self.generated)
        else:
            since, tokens = self._first
            if now - since >= MIN_RATE_WINDOW_S:
                self.tok_s = (self.generated - tokens) / (now - since)
        return True
