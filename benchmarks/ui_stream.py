"""Can the chat UI keep up with a fast model? A simulated 1,000 tok/s stream through the real app.

A paced fake engine streams a 4,000-token Markdown reply (optionally thinking first) at a fixed
token rate into the real Qwen3App (headless, 120x40). In the last scenario a separate thread also
types into the composer (a key every 50 ms) the way the terminal's input thread does.
Reported:

  ui updates/s      stream batches applied to the widgets per second
  frames/s          screen updates composed (rendered to terminal sequences, not written)
  display lag       how long a token waits between the engine yielding it and the UI showing it
  end lag           last token yielded -> reply finished on screen (final render included)
  key -> composer   key event posted -> the composer's text contains it
  key -> frame      key event posted -> the next frame that shows it
  loop stall        the longest the event loop could not run a 10 ms ticker

Run: python benchmarks/ui_stream.py [--rate 1000] [--tokens 4000] [--thinking 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from textual import events

from qwen3tui.engine.events import (
    AnswerDelta,
    Event,
    Summary,
    ThinkingDelta,
    ThinkingDone,
    Timings,
    Usage,
)
from qwen3tui.engine.info import EngineInfo
from qwen3tui.engine.options import ChatOptions, SamplingParams, default_sampling
from qwen3tui.settings import TurnSettings, UserSettings
from qwen3tui.store import SessionStore
from qwen3tui.tui import chat_screen
from qwen3tui.tui.app import Qwen3App
from qwen3tui.tui.widgets.composer import Composer

MARKDOWN = """## Section {n}

Streaming text with **bold**, `inline code` and a [link](https://example.com) keeps the
Markdown parser honest. Each paragraph is long enough to wrap across the terminal width a
few times, which is where whole-message re-rendering gets slow.

- a bullet point with some words in it
- another bullet, slightly longer than the first one
- and a third

```python
def step_{n}(x: int) -> int:
    return x * {n} + 1
```

"""


def token_stream(count: int) -> list[str]:
    """`count` ~4-character tokens of varied Markdown."""
    text, n = "", 0
    while len(text) < count * 4:
        text += MARKDOWN.format(n=n)
        n += 1
    return [text[i : i + 4] for i in range(0, count * 4, 4)]


@dataclass
class PacedEngine:
    """Yields tokens on a fixed schedule (not sleep-after-each, so the rate is exact)."""

    rate: float
    answer_tokens: int
    thinking_tokens: int
    # A 1,000 tok/s stream is a GPU's or a server's; "cpu" turns on the UI's CPU budget
    # (`UpdatePacer.pace_for`), which a model computing on this machine's cores gets.
    device: str = "cuda"
    produced_at: list[float] = field(default_factory=list)  # per yielded event
    first_token: float = 0.0
    last_token: float = 0.0

    @property
    def info(self) -> EngineInfo:
        return EngineInfo(
            model="bench/paced",
            path="-",
            device=self.device,
            dtype="float32",
            context_length=32768,
            num_parameters=0,
        )

    def count_tokens(self, messages: list[dict[str, str]], thinking: bool) -> int:
        return 10

    def sampling_for(self, options: ChatOptions) -> SamplingParams:
        return options.sampling.apply(default_sampling(options.thinking, {}))

    def prepare_next_turn(self, messages: list[dict[str, str]], cancel: object = None) -> int:
        return 0  # nothing to warm: the stream is scripted

    def stop_warming(self) -> None:
        pass

    def chat(
        self,
        messages: list[dict[str, str]],
        options: ChatOptions,
        cancel: threading.Event | None = None,
        answer_now: threading.Event | None = None,  # scripted: the stream runs as written
    ) -> Iterator[Event]:
        thinking = token_stream(self.thinking_tokens) if options.thinking else []
        answer = token_stream(self.answer_tokens)
        start = time.perf_counter()
        self.first_token = start
        for i, token in enumerate(thinking + answer):
            due = start + i / self.rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if cancel is not None and cancel.is_set():
                break
            if i < len(thinking):
                event: Event = ThinkingDelta(token, i + 1)
            else:
                if i == len(thinking) and thinking:
                    self.produced_at.append(time.perf_counter())
                    yield ThinkingDone(len(thinking), len(thinking) / self.rate, False)
                event = AnswerDelta(token)
            self.produced_at.append(time.perf_counter())
            yield event
        self.last_token = time.perf_counter()
        self.produced_at.append(self.last_token)
        yield Summary(
            "stop",
            "".join(thinking),
            "".join(answer),
            bool(thinking),
            None,
            False,
            Usage(10, len(thinking), len(answer)),
            Timings(decode_tok_s=self.rate),
        )


@dataclass
class Probe:
    drains: list[tuple[float, int]] = field(default_factory=list)  # (time, items taken)
    frames: list[float] = field(default_factory=list)
    key_posted: dict[str, float] = field(default_factory=dict)
    key_in_composer: dict[str, float] = field(default_factory=dict)
    key_on_frame: dict[str, float] = field(default_factory=dict)
    stalls: list[float] = field(default_factory=list)
    turn_done: float = 0.0


def install_probes(app: Qwen3App, probe: Probe) -> None:
    """Wrap the few places that tell when things happen; the app itself is unchanged."""
    original_drain = chat_screen.ChatScreen.drain

    async def drain(self: chat_screen.ChatScreen) -> None:
        taken = len(self.turn.mailbox._items) if self.turn else 0
        await original_drain(self)
        probe.drains.append((time.perf_counter(), taken))

    chat_screen.ChatScreen.drain = drain  # type: ignore[method-assign]

    original_display = app._display
    console = app.console

    def display(screen: object, renderable: object) -> None:
        if renderable is not None and not app._batch_count:
            # Headless skips the terminal encoding: do it here so frames cost what they would.
            render = getattr(renderable, "render_segments", None)
            if render is not None:
                render(console)
            now = time.perf_counter()
            probe.frames.append(now)
            for key in probe.key_in_composer:
                probe.key_on_frame.setdefault(key, now)
        original_display(screen, renderable)  # type: ignore[arg-type]

    app._display = display  # type: ignore[method-assign]

    original_key = Composer._on_key

    async def on_key(self: Composer, event: events.Key) -> None:
        await original_key(self, event)
        if event.character and event.character in probe.key_posted:
            probe.key_in_composer.setdefault(event.character, time.perf_counter())

    Composer._on_key = on_key  # type: ignore[method-assign]
    app.turn_finished = lambda turn: setattr(probe, "turn_done", time.perf_counter())


def typist(app: Qwen3App, probe: Probe, stop: threading.Event, interval: float) -> None:
    """Type like the terminal's input thread: post key events from another thread."""
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [chr(c) for c in range(0x3B1, 0x3C9)]
    for ch in chars:
        if stop.wait(interval):
            return
        probe.key_posted[ch] = time.perf_counter()
        app.post_message(events.Key(ch, ch))


async def ticker(probe: Probe, stop: asyncio.Event, period: float = 0.01) -> None:
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(period)
        probe.stalls.append(time.perf_counter() - before - period)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def run(
    rate: float,
    tokens: int,
    thinking: int,
    size: tuple[int, int],
    typing: bool,
    device: str = "cuda",
) -> dict[str, float]:
    engine = PacedEngine(rate, tokens - thinking, thinking, device)
    home = Path(tempfile.mkdtemp(prefix="qwen3tui-bench-"))
    settings = UserSettings(turn=TurnSettings(thinking=thinking > 0, thinking_budget=None))
    app = Qwen3App(
        engine_factory=lambda progress: engine,
        model_name="bench/paced",
        store=SessionStore.open(home / "sessions.db"),
        settings=settings,
    )
    probe = Probe()
    install_probes(app, probe)
    async with app.run_test(size=size) as pilot:
        while app.engine is None:
            await pilot.pause(0.01)
        chat = app.chat
        assert chat is not None
        chat.composer.focus()
        stop_typing, stop_ticker = threading.Event(), asyncio.Event()
        chat.submit("Write a long Markdown document.")
        tick = asyncio.create_task(ticker(probe, stop_ticker))
        typist_thread = threading.Thread(
            target=typist, args=(app, probe, stop_typing, 0.05), daemon=True
        )
        if typing:
            typist_thread.start()
        while not probe.turn_done:
            await asyncio.sleep(0.01)
        stop_typing.set()
        if typing:
            typist_thread.join()
        await asyncio.sleep(0.2)
        stop_ticker.set()
        await tick
        reply = chat.replies()[-1]
        shown = len(reply.answer_text) + len(reply.thinking_text)
    stream_s = engine.last_token - engine.first_token
    lags: list[float] = []
    taken_total = 0
    for when, taken in probe.drains:
        if taken:
            taken_total += taken
            newest = engine.produced_at[min(taken_total, len(engine.produced_at)) - 1]
            oldest = engine.produced_at[taken_total - taken]
            lags += [when - oldest, when - newest]
    in_stream = [t for t in probe.frames if engine.first_token <= t <= probe.turn_done]
    keys = [k for k in probe.key_posted if k in probe.key_in_composer]
    to_composer = [probe.key_in_composer[k] - probe.key_posted[k] for k in keys]
    to_frame = [
        probe.key_on_frame[k] - probe.key_posted[k] for k in keys if k in probe.key_on_frame
    ]
    return {
        "tokens": tokens,
        "thinking": thinking,
        "rate": rate,
        "achieved tok/s": tokens / stream_s if stream_s else float("nan"),
        "stream s": stream_s,
        "ui updates/s": len([d for d in probe.drains if d[1]]) / stream_s,
        "frames/s": len(in_stream) / (probe.turn_done - engine.first_token),
        "lag p50 ms": percentile(lags, 0.5) * 1000,
        "lag p95 ms": percentile(lags, 0.95) * 1000,
        "lag max ms": max(lags, default=float("nan")) * 1000,
        "end lag ms": (probe.turn_done - engine.last_token) * 1000,
        "keys": len(keys),
        "keys sent": len(probe.key_posted),
        "key->composer p50 ms": percentile(to_composer, 0.5) * 1000,
        "key->composer p95 ms": percentile(to_composer, 0.95) * 1000,
        "key->composer max ms": max(to_composer, default=float("nan")) * 1000,
        "key->frame p50 ms": percentile(to_frame, 0.5) * 1000,
        "key->frame p95 ms": percentile(to_frame, 0.95) * 1000,
        "loop stall max ms": max(probe.stalls, default=0.0) * 1000,
        "loop stall p95 ms": percentile(probe.stalls, 0.95) * 1000,
        "chars shown": shown,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=1000.0, help="tokens per second (1000)")
    p.add_argument("--tokens", type=int, default=4000, help="reply length in tokens (4000)")
    p.add_argument(
        "--thinking",
        type=int,
        default=1000,
        help="of which thinking tokens, streamed into the thinking pane (1000)",
    )
    p.add_argument(
        "--device",
        default="cuda",
        help="the device the scripted model claims (cuda); cpu shows the UI's CPU budget at work",
    )
    args = p.parse_args(argv)
    size = (120, 40)
    scenarios = [("answer only", 0, False)]
    if args.thinking:
        scenarios.append((f"{args.thinking} thinking + answer", args.thinking, False))
    scenarios.append(("answer, user typing", 0, True))
    rows = [
        (name, asyncio.run(run(args.rate, args.tokens, thinking, size, typing, args.device)))
        for name, thinking, typing in scenarios
    ]
    keys = [k for k in rows[0][1] if k != "thinking"]
    width = max(len(k) for k in keys)
    print(
        f"qwen3tui UI under a {args.rate:.0f} tok/s stream of {args.tokens} tokens (headless "
        f"120x40, Python {sys.version.split()[0]})"
    )
    print(f"{'':<{width}}  " + "  ".join(f"{name:>24}" for name, _ in rows))
    for k in keys:
        cells = []
        for _, r in rows:
            v = r[k]
            if isinstance(v, float) and math.isnan(v):
                cells.append(f"{'-':>24}")
            else:
                cells.append(f"{v:>24.1f}" if isinstance(v, float) else f"{v:>24}")
        print(f"{k:<{width}}  " + "  ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
