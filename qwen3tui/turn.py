"""One turn, the one way both the TUI and `ask` run it: messages in, events out, the reply saved.

`run_turn` drives any `ChatEngine`, records the reply through a `SessionSaver` as it streams
(the saver writes on its own thread, so neither generation nor the UI waits for the disk), and
yields the engine's events followed by exactly one `TurnEnded`. It renders nothing and knows no
widget; the caller shows the events.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from qwen3tui.engine.chat_engine import ChatEngine, Message
from qwen3tui.engine.errors import EngineError
from qwen3tui.engine.events import AnswerDelta, Event, Summary, ThinkingDelta
from qwen3tui.engine.options import ChatOptions
from qwen3tui.engine.thinking_mode import resolve_thinking
from qwen3tui.store import Attachment, Outcome, ReplyHandle, SessionLock, SessionSaver


@dataclass(frozen=True)
class TurnEnded:
    """The last item of every turn: how the reply ended and what it holds."""

    outcome: Outcome
    thinking: str
    answer: str
    summary: Summary | None = None  # None when generation failed before its end
    error: str | None = None  # one line, for Outcome.ERROR


@dataclass(frozen=True)
class WaitingForSession:
    """Another process is writing a reply in this session; this turn starts after it."""

    message: str


TurnEvent = Event | WaitingForSession | TurnEnded


class Stop:
    """Ends a turn early: `cancel()` for the user's stop, `interrupt()` when qwen3tui closes.
    `answer_now()` ends only the thinking: the model answers at once (the budget's way)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.answer_event = threading.Event()
        self.outcome = Outcome.CANCELLED

    def answer_now(self) -> None:
        self.answer_event.set()

    def cancel(self) -> None:
        self.event.set()

    def interrupt(self) -> None:
        self.outcome = Outcome.INTERRUPTED
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()


@dataclass
class Recording:
    """Where a turn's reply is saved."""

    saver: SessionSaver
    session_id: str
    model: str | None = None  # what wrote the reply, recorded with it
    user_text: str | None = None  # the user's message, saved once the session is ours
    # Files sent with it, saved apart from the typed text (the messages hold them expanded).
    attachments: tuple[Attachment, ...] = ()
    lock: SessionLock | None = None  # the session, when the caller took it already
    # Where in the session's active branch the turn's first new message goes: None at its end;
    # N puts it after the branch's first N messages, beside the one there, which stays on its
    # own branch (an edited message, or a retried reply when there is no user_text).
    at: int | None = None


def run_turn(
    engine: ChatEngine,
    messages: list[Message],
    options: ChatOptions,
    stop: Stop,
    recording: Recording | None = None,
) -> Iterator[TurnEvent]:
    """Stream one reply to `messages` (the last is the user's message).

    With a `recording`, the turn holds its session (another process's turn in it waits, and
    this one waits for theirs), saves the user's message if given, then the reply as it streams.
    """
    reply = _Reply(engine, options, recording)
    ended: TurnEnded | None = None
    lock: SessionLock | None = None
    try:
        if recording is not None:
            if recording.lock is None:
                lock = recording.saver.store.session_lock(recording.session_id)
                if not lock.try_acquire():
                    yield WaitingForSession(
                        "another qwen3tui is writing a reply in this session;"
                        " this one starts when it ends"
                    )
                    if not lock.acquire(stop.is_set):
                        ended = reply.end(stop.outcome)
                        yield ended
                        return
            if recording.user_text is not None:
                recording.saver.add_user_message(
                    recording.session_id,
                    recording.user_text,
                    recording.attachments,
                    at=recording.at,
                )
        for event in engine.chat(messages, options, stop.event, answer_now=stop.answer_event):
            if isinstance(event, Summary):
                outcome = Outcome.from_finish_reason(event.finish_reason)
                if outcome is Outcome.CANCELLED:
                    outcome = stop.outcome
                ended = reply.end(outcome, event)
                yield event
                yield ended
                return
            reply.on_event(event)
            yield event
        ended = reply.end(Outcome.ERROR, error="the engine stopped without finishing the reply")
        yield ended
    except EngineError as err:
        ended = reply.end(Outcome.ERROR, error=str(err))
        yield ended
    except Exception as err:  # noqa: BLE001 -- one line for the user, never a traceback
        message = f"generation failed: {type(err).__name__}: {err}".splitlines()[0]
        ended = reply.end(Outcome.ERROR, error=message)
        yield ended
    finally:
        if ended is None:  # the caller stopped listening (Ctrl+C twice, a closing app)
            reply.end(Outcome.INTERRUPTED)
        if lock is not None:
            # Held until this turn is on disk, so the next turn's rows come after it.
            recording.saver.wait_idle()  # type: ignore[union-attr]
            lock.release()


class _Reply:
    """The reply as it streams: kept in memory, and handed to the saver when there is one."""

    def __init__(
        self, engine: ChatEngine, options: ChatOptions, recording: Recording | None
    ) -> None:
        self.engine = engine
        self.options = options
        self.recording = recording
        self.handle: ReplyHandle | None = None
        self.thinking = ""
        self.answer = ""

    def _handle(self) -> ReplyHandle | None:
        """The reply's row is created at its first token."""
        if self.recording is None:
            return None
        if self.handle is None:
            sampling = asdict(self.engine.sampling_for(self.options))
            # What the model does, which its thinking mode may decide rather than the switch.
            thinking = resolve_thinking(self.engine.info.thinking_mode, self.options.thinking)
            self.handle = self.recording.saver.begin_reply(
                self.recording.session_id,
                thinking_enabled=thinking,
                budget=self.options.thinking_budget if thinking else None,
                sampling=sampling,
                model=self.recording.model,
                # A retry's reply replaces the old one's place; after a new user message the
                # reply simply follows it.
                at=self.recording.at if self.recording.user_text is None else None,
            )
        return self.handle

    def on_event(self, event: Event) -> None:
        if isinstance(event, ThinkingDelta):
            self.thinking += event.text
            handle = self._handle()
            if handle is not None:
                self.recording.saver.append(handle, thinking=event.text)  # type: ignore[union-attr]
        elif isinstance(event, AnswerDelta):
            self.answer += event.text
            handle = self._handle()
            if handle is not None:
                self.recording.saver.append(handle, answer=event.text)  # type: ignore[union-attr]

    def end(
        self, outcome: Outcome, summary: Summary | None = None, error: str | None = None
    ) -> TurnEnded:
        if summary is not None:
            # The summary's text is authoritative (the budget's closing text is in it).
            self.thinking, self.answer = summary.thinking, summary.answer
        ended = TurnEnded(outcome, self.thinking, self.answer, summary, error)
        handle = self._handle()
        if handle is not None and self.recording is not None:
            self.recording.saver.finish(
                handle,
                outcome,
                thinking=self.thinking,
                answer=self.answer,
                usage=_usage(summary),
                timings=asdict(summary.timings) if summary is not None else {},
                error=error,
            )
        return ended


def _usage(summary: Summary | None) -> dict[str, Any]:
    if summary is None:
        return {}
    return {
        **asdict(summary.usage),
        "finish_reason": summary.finish_reason,
        "thinking_budget_hit": summary.thinking_budget_hit,
        "thinking_cut_by_user": summary.thinking_cut_by_user,
    }
