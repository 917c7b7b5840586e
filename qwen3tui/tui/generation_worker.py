"""The bridge between the engine's generator (a worker thread) and the UI (the event loop).

The worker thread never touches a widget. It puts engine events into a `Mailbox` and posts
one `StreamReady` message when the mailbox goes from empty to non-empty; the UI drains the
mailbox at most every `FLUSH_INTERVAL_S` (longer when updates get costly, see
`UpdatePacer`), coalescing a burst of deltas into one update. So at 1,000 tok/s the UI does
at most ~30 updates a second instead of 1,000, and nothing waits: a lone token after a pause
is shown as soon as the UI gets to it. When the model computes on this machine's CPU, the
updates also keep to a small CPU budget, so that the UI does not take the decode's cores.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable

from textual.message import Message

from qwen3tui.engine.chat_engine import ChatEngine
from qwen3tui.engine.events import AnswerDelta, ThinkingDelta
from qwen3tui.engine.info import EngineInfo
from qwen3tui.engine.options import ChatOptions
from qwen3tui.store import Outcome
from qwen3tui.turn import Recording, Stop, TurnEnded, TurnEvent, run_turn

FLUSH_INTERVAL_S = 1 / 30  # the fastest the UI applies stream updates
MAX_FLUSH_INTERVAL_S = 0.25  # the slowest, however costly an update gets
STREAM_SHARE = 0.5  # at most this share of the UI's time goes to stream updates
TYPING_QUIET_S = 0.25  # after a keystroke, hold stream updates this long (echo comes first)
TYPING_MAX_WAIT_S = 0.5  # but never hold the stream longer than this
# With the model on this machine's CPU, the decode needs every core: an update (re-layout,
# Markdown, paint: ~30 ms of the UI thread for a reply of a few hundred tokens) costs the
# decode about its own length, as the UI thread holds a core and the GIL the decode re-takes
# after each kernel. So the UI thread's CPU time, all of it, stays within this share
# of the time (about 2 updates a second) ...
CPU_SHARE = 0.05
CPU_BURST_S = 0.15  # ... after a first few updates at the full rate (a short reply streams live)
CPU_MAX_INTERVAL_S = 0.5  # ... and the text still moves at least twice a second


# The decode thread gives up the GIL in every kernel and must take it back after; while the UI
# thread runs Python (an update, a timer) it waits up to the interpreter's switch interval
# (5 ms) each time, and its helper threads spin meanwhile. With the model on this machine's
# CPU the app asks for the GIL to change hands sooner: measured through the app on 2 cores,
# decode went from 6.97-7.78 to 8.16-9.11 tok/s (benchmarks/RESULTS.md).
DECODE_SWITCH_INTERVAL_S = 0.0005
_DEFAULT_SWITCH_INTERVAL_S = sys.getswitchinterval()


def hand_gil_over_quickly(info: EngineInfo | None) -> None:
    """Shorten the GIL's switch interval while a model computes on this machine's CPU; back to
    the interpreter's default otherwise (None: the chat is closing) where this shortened it.
    Any other interval is left alone: a GPU engine shortens it while it builds its kernels."""
    if info is not None and info.device == "cpu" and info.server is None:
        sys.setswitchinterval(DECODE_SWITCH_INTERVAL_S)
    elif abs(sys.getswitchinterval() - DECODE_SWITCH_INTERVAL_S) < 1e-6:
        sys.setswitchinterval(_DEFAULT_SWITCH_INTERVAL_S)


StreamItem = TurnEvent


class StreamReady(Message):
    """Posted from the worker thread: the mailbox has new items for generation `turn_id`."""

    def __init__(self, turn_id: int) -> None:
        super().__init__()
        self.turn_id = turn_id


class Mailbox:
    """A thread-safe hand-over of stream items from one producer to the UI."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[StreamItem] = []
        self.ended = False  # the turn's last item (TurnEnded) is in: show it without pacing

    def put(self, item: StreamItem) -> bool:
        """Add an item; True when the consumer must be woken: the mailbox was empty, or the
        item ends the turn (its end is shown at once, however the updates are paced)."""
        with self._lock:
            self._items.append(item)
            if isinstance(item, TurnEnded):
                self.ended = True
                return True
            return len(self._items) == 1

    def take(self) -> list[StreamItem]:
        with self._lock:
            items, self._items = self._items, []
        return items


class UpdatePacer:
    """Decides when the UI applies the next stream update.

    An update (apply the batch, re-layout, paint) of a long reply costs more than a short
    one. The pacer measures each update and spaces them so they take at most `share` of the
    UI's time: typing and scrolling always get the rest. While the user types, updates wait
    until a short pause (at most `typing_max_wait`), so a keystroke's echo never queues
    behind a Markdown re-layout.

    With `cpu_share` set (`pace_for` a model on this machine's CPU), the UI thread's CPU time
    (`cpu_clock`, read on the UI thread: everything it does, the layout and paint that follow
    an update included) is held to that share of the time, as a bucket: it earns `cpu_share`
    seconds a second, holds at most `cpu_burst`, and an update waits while it is in debt, at
    most until `cpu_max_interval` after the last one.
    """

    def __init__(
        self,
        min_interval: float = FLUSH_INTERVAL_S,
        max_interval: float = MAX_FLUSH_INTERVAL_S,
        share: float = STREAM_SHARE,
        typing_quiet: float = TYPING_QUIET_S,
        typing_max_wait: float = TYPING_MAX_WAIT_S,
        cpu_share: float | None = None,
        cpu_burst: float = CPU_BURST_S,
        cpu_max_interval: float = CPU_MAX_INTERVAL_S,
        cpu_clock: Callable[[], float] = time.thread_time,
    ) -> None:
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.share = share
        self.typing_quiet = typing_quiet
        self.typing_max_wait = typing_max_wait
        self.cpu_share = cpu_share
        self.cpu_burst = cpu_burst
        self.cpu_max_interval = cpu_max_interval
        self.cpu_clock = cpu_clock
        self.cpu_credit = cpu_burst  # UI CPU seconds the stream may still spend at once
        self._cpu_seen: tuple[float, float] | None = None  # (time, UI CPU time) last looked at
        self.interval = min_interval
        self.last_start = float("-inf")
        self.quiet_until = float("-inf")

    def pace_for(self, info: EngineInfo) -> None:
        """Keep to the CPU budget when this model computes on this machine's CPU."""
        on_this_cpu = info.device == "cpu" and info.server is None
        self.cpu_share = CPU_SHARE if on_this_cpu else None

    def delay(self, now: float) -> float:
        """How long to wait before the next update (0: now)."""
        since = now - self.last_start
        paced = self.interval - since
        if self.cpu_share is not None:
            self._count_cpu(now)
            if self.cpu_credit < 0:
                wait = min(-self.cpu_credit / self.cpu_share, self.cpu_max_interval - since)
                paced = max(paced, wait)
        if now < self.quiet_until:
            longest = self.typing_max_wait - since
            paced = max(paced, min(self.quiet_until - now, longest))
        return max(0.0, paced)

    def typed(self, now: float) -> None:
        """The user pressed a key."""
        self.quiet_until = now + self.typing_quiet

    def started(self, now: float) -> None:
        self.last_start = now
        if self.cpu_share is not None:
            self._count_cpu(now)

    def _count_cpu(self, now: float) -> None:
        """Bring the CPU bucket up to now: what the UI thread earned and spent since the
        last look (the first look only starts the count)."""
        cpu = self.cpu_clock()
        if self._cpu_seen is not None and self.cpu_share is not None:
            then, cpu_then = self._cpu_seen
            earned = self.cpu_share * (now - then)
            self.cpu_credit = min(self.cpu_burst, self.cpu_credit + earned - (cpu - cpu_then))
        self._cpu_seen = (now, cpu)

    def finished(self, cost: float) -> None:
        """The update started at `last_start` is on screen after `cost` seconds."""
        wanted = cost / self.share
        self.interval = min(self.max_interval, max(self.min_interval, wanted))


def coalesce(items: Iterable[StreamItem]) -> list[StreamItem]:
    """Merge runs of consecutive deltas of one kind into one delta; keep everything else.

    A merged ThinkingDelta keeps the latest token count, so the pane's title stays exact.
    """
    out: list[StreamItem] = []
    for item in items:
        last = out[-1] if out else None
        if isinstance(item, ThinkingDelta) and isinstance(last, ThinkingDelta):
            out[-1] = ThinkingDelta(last.text + item.text, item.thinking_tokens)
        elif isinstance(item, AnswerDelta) and isinstance(last, AnswerDelta):
            out[-1] = AnswerDelta(last.text + item.text)
        else:
            out.append(item)
    return out


def run_generation(
    engine: ChatEngine,
    messages: list[dict[str, str]],
    options: ChatOptions,
    stop: Stop,
    recording: Recording | None,
    mailbox: Mailbox,
    wake: Callable[[], None],
) -> None:
    """Body of the generation worker thread: stream the turn into the mailbox.

    Runs the one turn runner (which saves the turn); always ends with its one `TurnEnded`.
    Then, while the user reads the reply, warms the engine for the next turn.
    """

    def put(item: StreamItem) -> None:
        if mailbox.put(item):
            wake()

    ended: TurnEnded | None = None
    for item in run_turn(engine, messages, options, stop, recording):
        put(item)
        if isinstance(item, TurnEnded):
            ended = item
    if ended is not None and ended.outcome is Outcome.COMPLETE and ended.answer:
        if not stop.is_set():
            warm_next_turn(
                engine, [*messages, {"role": "assistant", "content": ended.answer}], stop.event
            )


def warm_next_turn(
    engine: ChatEngine, messages: list[dict[str, str]], cancel: threading.Event
) -> None:
    """While the user reads the reply, let the engine prefill the next prompt's start.

    Only an optimization: it gives way to the next reply, and a failure here is not the
    user's concern (the next turn simply prefills more).
    """
    try:
        engine.prepare_next_turn(messages, cancel)
    except Exception:  # noqa: BLE001, S110
        pass
