"""Saving a reply while it streams: buffered in memory, flushed at most every 0.5 s."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .models import STATUSES

if TYPE_CHECKING:
    from .store import SessionStore

FLUSH_INTERVAL_S = 0.5


class ReplyWriter:
    """One assistant reply being written. Its row exists (status `partial`) from creation on.

    Appends collect text in memory; the text is written out (one transaction) when at least
    `interval` seconds passed since the last write, and on `finish`. A process killed mid-reply
    thus leaves the reply as of its last flush, marked `partial`.
    """

    def __init__(
        self,
        store: SessionStore,
        *,
        message_id: int,
        session_id: str,
        order: int,
        clock: Callable[[], float],
        interval: float = FLUSH_INTERVAL_S,
    ) -> None:
        self._store = store
        self.message_id = message_id
        self.session_id = session_id
        self.order = order
        self._clock = clock
        self._interval = interval
        self._thinking: list[str] = []
        self._answer: list[str] = []
        self._dirty = False
        self._last_flush = clock()
        self.flushes = 0
        self.status: str | None = None  # set by finish

    @property
    def thinking(self) -> str:
        return "".join(self._thinking)

    @property
    def answer(self) -> str:
        return "".join(self._answer)

    @property
    def finished(self) -> bool:
        return self.status is not None

    def append_thinking(self, text: str) -> None:
        self._append(self._thinking, text)

    def append_answer(self, text: str) -> None:
        self._append(self._answer, text)

    def replace_text(self, *, thinking: str, answer: str) -> None:
        """Set the whole text (e.g. from the engine's final summary); written at the next flush."""
        self._check_open()
        self._thinking = [thinking]
        self._answer = [answer]
        self._dirty = True

    def _append(self, parts: list[str], text: str) -> None:
        self._check_open()
        if not text:
            return
        parts.append(text)
        self._dirty = True
        if self._clock() - self._last_flush >= self._interval:
            self.flush()

    def _check_open(self) -> None:
        if self.finished:
            raise RuntimeError(f"reply {self.message_id} is already finished ({self.status})")

    def flush(self) -> None:
        """Write the text collected so far now (one transaction)."""
        if not self._dirty:
            return
        self._store._save_reply(
            self.message_id, self.session_id, thinking=self.thinking, answer=self.answer
        )
        self._dirty = False
        self._last_flush = self._clock()
        self.flushes += 1

    def finish(
        self,
        status: str,
        usage: dict[str, Any] | None = None,
        timings: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        """Write the final text, status, token counts and timings."""
        self._check_open()
        if status not in STATUSES:
            raise ValueError(f"unknown reply status {status!r}; expected one of {STATUSES}")
        self._store._save_reply(
            self.message_id,
            self.session_id,
            thinking=self.thinking,
            answer=self.answer,
            status=status,
            usage=usage or {},
            timings=timings or {},
            error=error,
            final=True,
        )
        self._dirty = False
        self.status = status
