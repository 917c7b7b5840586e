"""Split a streamed reply into thinking and answer events, as the local engine splits them.

The server may split it already (a reasoning field beside the content), or leave
`<think>…</think>` in the text. In the text the block may open with `<think>` or may have been
opened by the prompt (a template that opens it, or our own raw completions), in which case only
`</think>` appears. A tag can arrive cut across two chunks, so a tail that could begin a tag is
held back until the next chunk decides it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from qwen3tui.engine.events import AnswerDelta, Event, ThinkingDelta, ThinkingDone

THINK_START = "<think>"
THINK_END = "</think>"
# Special tokens a server may leave in raw text: the reply ends there.
END_MARKERS = ("<|im_end|>", "<|endoftext|>")

START, UNDECIDED, THINKING, ANSWER = "start", "undecided", "thinking", "answer"


def _held_tail(text: str, markers: tuple[str, ...]) -> int:
    """How many trailing characters of `text` could be the start of one of `markers`."""
    longest = 0
    for marker in markers:
        for size in range(min(len(marker) - 1, len(text)), 0, -1):
            if text.endswith(marker[:size]):
                longest = max(longest, size)
                break
    return longest


class ReplySplitter:
    """Feed it (reasoning, content) pairs; it returns the events to yield.

    `expect_thinking`: the request asked for thinking. `opened`: the prompt already opened the
    think block (the text starts inside it). Text whose role cannot be told yet (thinking was
    asked for, the server splits nothing, and no tag has come) is held until `</think>` shows
    it was thinking, or the end shows it was the answer.
    """

    def __init__(
        self,
        *,
        expect_thinking: bool,
        opened: bool = False,
        started: float | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.clock = clock
        self.started = clock() if started is None else started
        self.state = THINKING if opened else START
        self.expect_thinking = expect_thinking
        self.server_splits = False  # a reasoning field was seen: content is the answer
        self.thinking_text: list[str] = []
        self.answer_text: list[str] = []
        self.thinking_pieces = 0  # chunks of thinking: about one token each on every server
        self.answer_pieces = 0
        self.thinking_done = False
        self.thinking_seconds = 0.0
        self.ended = False  # an end marker was seen: later text is not part of the reply
        self._held = ""
        self._held_pieces = 0

    # -- input -----------------------------------------------------------------------------

    def feed(self, reasoning: str, content: str) -> list[Event]:
        events: list[Event] = []
        if self.ended:
            return events
        if reasoning:
            self.server_splits = True
            if self.state in (START, UNDECIDED):
                self.state = THINKING
            self._think(reasoning, 1, events)
        if content:
            if self.server_splits:
                text, pieces = self._take_held(content)
                self._close_thinking(events)
                self.state = ANSWER
                self._answer_text(text, pieces, events)
            else:
                self._scan(content, events)
        return events

    def finish(self) -> list[Event]:
        """Flush held text at the end of the stream."""
        events: list[Event] = []
        held, pieces = self._take_held("")
        if self.state == THINKING:
            self._think(held, pieces, events)
        else:
            # START/UNDECIDED: never opened, never closed, so the model did not think.
            self.state = ANSWER
            self._answer(held, pieces, events)
        return events

    def inject_thinking(self, text: str) -> list[Event]:
        """Thinking text that was placed, not sampled (the budget's sentence): not counted."""
        events: list[Event] = []
        held, pieces = self._take_held("")
        self._think(held, pieces, events)
        self._think(text, 0, events)
        return events

    def close_thinking(
        self, budget_hit: bool, thinking_tokens: int, cut_by_user: bool = False
    ) -> list[Event]:
        """End the thinking from outside (the budget, or the user's "answer now"); the caller
        streams the answer after."""
        events: list[Event] = []
        if self.state != ANSWER:
            held, pieces = self._take_held("")
            self._think(held, pieces, events)
        self._close_thinking(
            events, budget_hit=budget_hit, thinking_tokens=thinking_tokens, cut_by_user=cut_by_user
        )
        self.state = ANSWER
        return events

    # -- routing ---------------------------------------------------------------------------

    def _take_held(self, text: str) -> tuple[str, int]:
        """The held text with `text` after it, and how many chunks that is."""
        held, pieces = self._held + text, self._held_pieces + (1 if text else 0)
        self._held, self._held_pieces = "", 0
        return held, pieces

    def _hold(self, text: str, pieces: int) -> None:
        self._held, self._held_pieces = text, pieces

    def _scan(self, content: str, events: list[Event]) -> None:
        text, pieces = self._take_held(content)
        if self.state == START:
            stripped = text.lstrip()
            if stripped.startswith(THINK_START):
                self.state = THINKING
                text = stripped[len(THINK_START) :]
            elif THINK_START.startswith(stripped):
                self._hold(text, pieces)  # whitespace, or the start of "<think>": wait
                return
            else:
                self.state = UNDECIDED if self.expect_thinking else ANSWER
        if self.state == UNDECIDED:
            if THINK_END not in text:
                self._hold(text, pieces)
                return
            self.state = THINKING  # the prompt had opened the block
        if self.state == THINKING:
            if not self.thinking_text and text.lstrip().startswith(THINK_START):
                text = text.lstrip()[len(THINK_START) :]  # the model opened it once more
            cut = text.find(THINK_END)
            end = min((i for i in (text.find(m) for m in END_MARKERS) if i >= 0), default=-1)
            if end >= 0 and (cut < 0 or end < cut):
                self.ended = True  # the model ended its turn inside the thinking
                self._think(text[:end], pieces, events)
                return
            if cut < 0:
                keep = _held_tail(text, (THINK_END, *END_MARKERS))
                if keep:
                    self._hold(text[-keep:], 0)
                    text = text[:-keep]
                self._think(text, pieces, events)
                return
            self._think(text[:cut], pieces if text[:cut] else 0, events)  # "</think>" is no thought
            self._close_thinking(events)
            self.state = ANSWER
            text, pieces = text[cut + len(THINK_END) :], 0
        self._answer_text(text, pieces, events)

    def _answer_text(self, text: str, pieces: int, events: list[Event]) -> None:
        for marker in END_MARKERS:
            cut = text.find(marker)
            if cut >= 0:
                self.ended = True
                text = text[:cut]
        if not self.ended:
            keep = _held_tail(text, END_MARKERS)
            if keep:
                self._hold(text[-keep:], 0)
                text = text[:-keep]
        self._answer(text, pieces, events)

    # -- output ----------------------------------------------------------------------------

    def _think(self, text: str, pieces: int, events: list[Event]) -> None:
        self.thinking_pieces += pieces
        if not self.thinking_text:
            text = text.lstrip()  # the block opens with a newline; a bare "\n\n" is no thinking
        if text:
            self.thinking_text.append(text)
            events.append(ThinkingDelta(text, self.thinking_pieces))

    def _close_thinking(
        self,
        events: list[Event],
        *,
        budget_hit: bool = False,
        thinking_tokens: int | None = None,
        cut_by_user: bool = False,
    ) -> None:
        if self.thinking_done or not (self.thinking_text or self.expect_thinking):
            return
        self.thinking_done = True
        self.thinking_seconds = self.clock() - self.started
        tokens = self.thinking_pieces if thinking_tokens is None else thinking_tokens
        events.append(ThinkingDone(tokens, self.thinking_seconds, budget_hit, cut_by_user))

    def _answer(self, text: str, pieces: int, events: list[Event]) -> None:
        self.answer_pieces += pieces
        if not self.answer_text:
            text = text.lstrip("\n")  # Qwen opens the answer with blank lines after </think>
        if text:
            self.answer_text.append(text)
            events.append(AnswerDelta(text))

    # -- results ---------------------------------------------------------------------------

    @property
    def thinking(self) -> str:
        return "".join(self.thinking_text).strip()

    @property
    def answer(self) -> str:
        return "".join(self.answer_text)
