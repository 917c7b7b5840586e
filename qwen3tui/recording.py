"""Saving a streaming reply: engine events in, session-store writes out.

The recorder never raises because of the store: a failed write (disk full, database gone)
is noted in `.warning` and the reply keeps streaming; the text stays available in memory.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from qwen3tui.engine.events import AnswerDelta, Summary, ThinkingDelta

if TYPE_CHECKING:
    from qwen3tui.store import ReplyWriter, SessionStore

_STATUS_FOR_FINISH = {"stop": "complete", "length": "complete", "cancelled": "cancelled"}


class ReplyRecorder:
    """Records one reply. Feed it every engine event; call `fail` if generation raised."""

    def __init__(
        self,
        store: SessionStore,
        session_id: str,
        *,
        thinking_enabled: bool,
        budget: int | None,
        sampling: dict[str, Any],
    ) -> None:
        self.store = store
        self.session_id = session_id
        self.thinking_enabled = thinking_enabled
        self.budget = budget
        self.sampling = dict(sampling)
        self.writer: ReplyWriter | None = None
        self.thinking = ""  # everything received, whether or not it could be saved
        self.answer = ""
        self.status: str | None = None  # final status once finished
        self.warning: str | None = None
        self._store_broken = False
        self._warnings_seen = len(store.warnings)

    @property
    def message_id(self) -> int | None:
        return self.writer.message_id if self.writer else None

    @property
    def finished(self) -> bool:
        return self.status is not None

    def on_event(self, event: object) -> None:
        if self.finished:
            return
        if isinstance(event, ThinkingDelta):
            self.thinking += event.text
            self._store_call(lambda w: w.append_thinking(event.text))
        elif isinstance(event, AnswerDelta):
            self.answer += event.text
            self._store_call(lambda w: w.append_answer(event.text))
        elif isinstance(event, Summary):
            self._finish_from(event)
        # ContextNotice and ThinkingDone change nothing that is saved.

    def fail(self, message: str) -> None:
        """Generation failed: keep what was streamed, status `error` with the message."""
        if self.finished:
            return
        self.status = "error"
        self._store_call(lambda w: w.finish("error", {}, {}, error=message))

    def _finish_from(self, summary: Summary) -> None:
        # The summary's text is authoritative (it may differ from the deltas, e.g. when the
        # engine closed a thinking block for the budget).
        if summary.thinking or summary.answer:
            self.thinking, self.answer = summary.thinking, summary.answer
        status = _STATUS_FOR_FINISH.get(summary.finish_reason, "complete")
        usage: dict[str, Any] = {
            **asdict(summary.usage),
            "finish_reason": summary.finish_reason,
            "thinking_budget_hit": summary.thinking_budget_hit,
        }
        timings = asdict(summary.timings)
        self.status = status

        def finish(w: ReplyWriter) -> None:
            if (w.thinking, w.answer) != (self.thinking, self.answer):
                w.replace_text(thinking=self.thinking, answer=self.answer)
            w.finish(status, usage, timings)

        self._store_call(finish)

    def _store_call(self, action: Any) -> None:
        """Run `action(writer)`, creating the reply row first if needed; never raise."""
        if self._store_broken:
            return
        try:
            if self.writer is None:
                self.writer = self.store.begin_reply(
                    self.session_id,
                    thinking_enabled=self.thinking_enabled,
                    budget=self.budget,
                    sampling=self.sampling,
                )
                # The row is created at the first token; that token's text is already in
                # self.thinking/answer and goes out with the next throttled flush.
                self.writer.replace_text(thinking=self.thinking, answer=self.answer)
                if self.status is None:
                    return
            action(self.writer)
        except Exception as err:  # the store must never stop a reply
            self._store_broken = True
            self.warning = f"this reply could not be saved ({err}); it is kept on screen only"
        finally:
            if len(self.store.warnings) > self._warnings_seen:
                self.warning = self.store.warnings[-1]
                self._warnings_seen = len(self.store.warnings)
