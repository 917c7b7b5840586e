"""Saving a conversation as it happens, off the caller's thread, and never losing it.

Callers (the UI thread, a generation thread, `ask`) hand writes to a `SessionSaver`; they never
wait for the disk. One saving thread writes them in order:

- a lock held by another process is a wait (the store waits as long as it takes);
- a store that refuses writes (disk full, read-only, file gone) keeps every write queued here,
  in memory, and says so once through `on_change`; the thread tries again with back-off, and
  when the store takes writes again everything held is written, in order, and that is said too;
- a streaming reply's text is written as it comes, at most once per `flush_interval`, as
  appended chunks (never the whole reply again), and in full when the reply ends.

`idle()` is true only when everything handed over is on disk: nothing is reported as saved
that is not.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .attachments import Attachment
from .errors import StoreError, StoreUnavailable
from .outcome import Outcome
from .store import SessionStore, new_session_id

FLUSH_INTERVAL_S = 0.5
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 5.0


@dataclass(frozen=True)
class SaveState:
    """What the user should know about saving."""

    unavailable: str | None = None  # why nothing reaches the disk now (None: saving works)
    waiting_for_lock: bool = False  # another process holds the store; writes wait for it
    pending: int = 0  # writes not on disk yet
    dropped: str | None = None  # the latest write that can never succeed, and why

    @property
    def saving(self) -> bool:
        return self.unavailable is None


@dataclass(eq=False)
class ReplyHandle:
    """One reply being saved. All its text stays here until the reply is finished and saved."""

    session_id: str
    thinking: str = ""
    answer: str = ""
    message_id: int | None = None  # set by the saving thread once the row exists
    flushed_thinking: int = 0  # characters already on disk (as chunks)
    flushed_answer: int = 0
    last_flush: float = field(default=float("-inf"))
    finishing: bool = False  # finish() was called: the full text goes out with it

    @property
    def unflushed(self) -> bool:
        return (self.flushed_thinking, self.flushed_answer) != (
            len(self.thinking),
            len(self.answer),
        )


@dataclass
class _Op:
    describe: str  # for "not saved: …" lists
    apply: Callable[[SessionStore], None]


class SessionSaver:
    def __init__(
        self,
        store: SessionStore,
        *,
        on_change: Callable[[SaveState], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        flush_interval: float = FLUSH_INTERVAL_S,
        retry_first: float = RETRY_FIRST_S,
    ) -> None:
        self.store = store
        self.on_change = on_change
        self._clock = clock
        self._interval = flush_interval
        self._cond = threading.Condition()
        self._ops: deque[_Op] = deque()
        self._streaming: list[ReplyHandle] = []
        self._busy = False  # the thread is writing something taken off the queue
        self._closing = False
        self._unavailable: str | None = store.unavailable
        self._waiting = False
        self._dropped: str | None = None
        self._retry_first = retry_first
        self._retry_delay = retry_first
        store.on_lock_wait = self._lock_wait
        self._thread = threading.Thread(target=self._run, name="qwen3tui-saver", daemon=True)
        self._thread.start()

    # -- what callers hand over (never blocks on the disk) ---------------------------------

    def create_session(
        self, model: str, system_prompt: str | None, settings: dict[str, Any]
    ) -> str:
        session_id = new_session_id()
        self._put(
            "the new session",
            lambda s: s.create_session(model, system_prompt, settings, session_id=session_id),
        )
        return session_id

    def add_user_message(
        self,
        session_id: str,
        text: str,
        attachments: Sequence[Attachment] = (),
        *,
        at: int | None = None,
    ) -> None:
        """`at`: a position in the active branch, for an edited message (see SessionStore);
        it is read when the write happens, after every write handed over before it."""
        files = tuple(attachments)
        self._put("your message", lambda s: s.add_user_message(session_id, text, files, at=at))

    def call(self, describe: str, action: Callable[[SessionStore], Any]) -> None:
        """Queue any other change (rename, settings, system prompt, delete, …)."""
        self._put(describe, action)

    def begin_reply(
        self,
        session_id: str,
        *,
        thinking_enabled: bool,
        budget: int | None,
        sampling: dict[str, Any],
        model: str | None = None,
        at: int | None = None,
    ) -> ReplyHandle:
        """`at`: the old reply's position in the active branch, for /retry."""
        handle = ReplyHandle(session_id)

        def begin(s: SessionStore) -> None:
            handle.message_id = s.begin_reply(
                session_id,
                thinking_enabled=thinking_enabled,
                budget=budget,
                sampling=sampling,
                model=model,
                at=at,
            )
            handle.last_flush = self._clock()

        self._put("the reply", begin)
        with self._cond:
            self._streaming.append(handle)
        return handle

    def append(self, handle: ReplyHandle, *, thinking: str = "", answer: str = "") -> None:
        with self._cond:
            handle.thinking += thinking
            handle.answer += answer
            self._cond.notify()

    def finish(
        self,
        handle: ReplyHandle,
        outcome: Outcome,
        *,
        thinking: str | None = None,
        answer: str | None = None,
        usage: dict[str, Any] | None = None,
        timings: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        """End the reply; `thinking`/`answer` replace the streamed text when given."""
        with self._cond:
            if thinking is not None:
                handle.thinking = thinking
            if answer is not None:
                handle.answer = answer
            handle.finishing = True

        def finish(s: SessionStore) -> None:
            if handle.message_id is None:  # its row could never be made (said already)
                with self._cond:
                    if handle in self._streaming:
                        self._streaming.remove(handle)
                return
            s.finish_reply(
                handle.message_id,
                thinking=handle.thinking,
                answer=handle.answer,
                outcome=outcome,
                usage=usage,
                timings=timings,
                error=error,
            )
            with self._cond:
                if handle in self._streaming:
                    self._streaming.remove(handle)

        self._put("the reply", finish)

    # -- state -------------------------------------------------------------------------

    @property
    def state(self) -> SaveState:
        with self._cond:
            return self._state()

    def _state(self) -> SaveState:
        pending = len(self._ops) + int(self._busy)
        # A reply whose row is not made yet is counted by its queued begin (or was dropped).
        pending += sum(
            1
            for h in self._streaming
            if h.unflushed and not h.finishing and h.message_id is not None
        )
        return SaveState(self._unavailable, self._waiting, pending, self._dropped)

    def idle(self) -> bool:
        """Everything handed over so far is on disk."""
        with self._cond:
            return self._state().pending == 0

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until everything handed over is on disk, or until the store refuses writes.

        Returns whether everything is on disk. Waiting for another process's lock is waited
        out (up to `timeout`).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._flush_now = True
            self._cond.notify_all()
            while self._state().pending and self._unavailable is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(0.05 if left is None else min(left, 0.05))
            return self._state().pending == 0

    def unsaved(self) -> list[str]:
        """What is still only in memory, in words (for a last message before exiting)."""
        with self._cond:
            items = [op.describe for op in self._ops]
            items += [
                f"the end of the reply ({len(h.answer)} characters)"
                for h in self._streaming
                if h.unflushed and not h.finishing
            ]
        return list(dict.fromkeys(items))

    def close(self, timeout: float | None = None) -> bool:
        """Write what is queued (waiting up to `timeout`), then stop. Returns whether all of it
        is on disk."""
        saved = self.wait_idle(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=1.0)
        return saved

    # -- the saving thread ---------------------------------------------------------------

    _flush_now = False  # wait_idle asks for streamed text to go out without its interval

    def _put(self, describe: str, apply: Callable[[SessionStore], Any]) -> None:
        with self._cond:
            if self._closing:
                raise StoreError("the session saver is closed")
            self._ops.append(_Op(describe, apply))
            self._cond.notify_all()

    def _lock_wait(self, waiting: bool) -> None:
        with self._cond:
            self._waiting = waiting
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change(self.state)
            except Exception:  # noqa: BLE001 -- a listener's failure must not stop saving
                pass

    def _due_reply(self, now: float) -> tuple[ReplyHandle | None, float | None]:
        """The reply whose streamed text is due now, else how long until one is."""
        soonest: float | None = None
        for h in self._streaming:
            if h.message_id is None or h.finishing or not h.unflushed:
                continue
            due = h.last_flush + self._interval
            if due <= now or self._flush_now or self._closing:
                return h, None
            soonest = due - now if soonest is None else min(soonest, due - now)
        return None, soonest

    def _take(self) -> _Job | None:
        """Block until there is something to write; None when closing with nothing to do."""
        with self._cond:
            while True:
                if self._unavailable is not None:
                    if self._closing:
                        return None
                    self._cond.wait(self._retry_delay)
                    self._retry_delay = min(self._retry_delay * 2, RETRY_MAX_S)
                    if self._closing:
                        return None
                    job = self._ready_job(force=True) or _Job(_PROBE)
                    self._busy = True
                    return job
                ready = self._ready_job(force=False)
                if ready is not None:
                    self._busy = True
                    return ready
                if self._closing:
                    return None
                _, wait = self._due_reply(self._clock())
                self._flush_now = False
                self._cond.notify_all()
                self._cond.wait(wait)

    def _ready_job(self, *, force: bool) -> _Job | None:
        if self._ops:
            return _Job(self._ops[0])
        now = self._clock()
        handle, _ = self._due_reply(float("inf") if force else now)
        if handle is None:
            return None
        return _Job(
            None,
            handle,
            handle.thinking[handle.flushed_thinking :],
            handle.answer[handle.flushed_answer :],
        )

    def _run(self) -> None:
        while True:
            job = self._take()
            if job is None:
                return
            try:
                job.write(self.store)
            except StoreUnavailable as err:
                with self._cond:
                    self._busy = False
                    newly = self._unavailable is None
                    self._unavailable = err.reason
                    self._cond.notify_all()
                if newly:
                    self._changed()
                continue
            except Exception as err:  # noqa: BLE001 -- a write that can never succeed
                # (its session was deleted meanwhile, say): drop it, say so, keep the rest going.
                with self._cond:
                    self._busy = False
                    if job.op is not None and self._ops and self._ops[0] is job.op:
                        self._ops.popleft()
                    if job.handle is not None:  # its text stays unsaved: stop flushing it
                        job.handle.finishing = True
                    self._dropped = f"{job.describe} could not be saved ({err})"
                    self._cond.notify_all()
                self._changed()
                continue
            with self._cond:
                self._busy = False
                if job.op is not None and job.op is not _PROBE:
                    self._ops.popleft()
                elif job.handle is not None:
                    job.handle.flushed_thinking += len(job.thinking)
                    job.handle.flushed_answer += len(job.answer)
                    job.handle.last_flush = self._clock()
                recovered = self._unavailable is not None
                self._unavailable = None
                self._retry_delay = self._retry_first
                self._cond.notify_all()
            if recovered:
                self._changed()


_PROBE = _Op("", lambda s: s.check_writable())


@dataclass
class _Job:
    """One write taken off the queue: an op, or a reply's newly streamed text."""

    op: _Op | None
    handle: ReplyHandle | None = None
    thinking: str = ""
    answer: str = ""

    @property
    def describe(self) -> str:
        return self.op.describe if self.op is not None else "the reply"

    def write(self, store: SessionStore) -> None:
        if self.op is not None:
            self.op.apply(store)
        else:
            assert self.handle is not None and self.handle.message_id is not None
            store.append_reply(self.handle.message_id, thinking=self.thinking, answer=self.answer)
