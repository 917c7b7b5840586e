"""The status bar while a reply streams: the context used and the speed are this reply's, as it
goes (not "ctx 0" or the previous reply's tok/s until the end)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fake_engine import FakeEngine
from tui_helpers import finish_turn, make_app, ready, send, wait_for_thread, wait_until

from qwen3tui.engine.events import AnswerDelta, Event, Summary, ThinkingDelta, ThinkingDone
from qwen3tui.engine.options import ChatOptions
from qwen3tui.settings import TurnSettings, UserSettings
from qwen3tui.tui import live_stats
from qwen3tui.tui.live_stats import MIN_RATE_WINDOW_S, LiveStats
from qwen3tui.tui.widgets.status_bar import StatusInfo, format_status

pytestmark = pytest.mark.anyio  # anyio's pytest plugin runs the async Pilot tests on asyncio

PROMPT = "Why is the sky blue?"  # the fake engine counts 5 words + 4 = 9 prompt tokens
SETTINGS = UserSettings(turn=TurnSettings(thinking=True, thinking_budget=None))


def status_text(app: Any) -> str:
    return str(app.chat.status.render())


@dataclass
class GatedEngine(FakeEngine):
    """A fake engine whose tokens come one `allow()` at a time, once `gated` is set."""

    gated: bool = False
    gate: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))

    def allow(self, tokens: int) -> None:
        for _ in range(tokens):
            self.gate.release()

    def chat(
        self,
        messages: list[dict[str, str]],
        options: ChatOptions,
        cancel: threading.Event | None = None,
        answer_now: threading.Event | None = None,
    ) -> Iterator[Event]:
        for event in super().chat(messages, options, cancel, answer_now):
            if self.gated and isinstance(event, ThinkingDelta | AnswerDelta):
                deadline = time.monotonic() + self.hold_timeout_s
                while not self.gate.acquire(timeout=0.01):
                    if (cancel is not None and cancel.is_set()) or time.monotonic() > deadline:
                        break
            yield event


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_the_context_used_counts_the_prompt_as_soon_as_the_message_is_sent(
    qwen3tui_home: Path,
) -> None:
    engine = FakeEngine(hold_after=0)  # nothing generated yet
    app = make_app(engine, qwen3tui_home, settings=SETTINGS)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        assert "ctx 0 / 4,096" in status_text(app)
        await send(pilot, PROMPT)
        await wait_for_thread(engine.holding)
        await wait_until(pilot, lambda: "ctx 9 / 4,096" in status_text(app), what="ctx 9")
        engine.release.set()
        await finish_turn(pilot)


async def test_the_context_used_grows_with_the_tokens_of_the_reply(qwen3tui_home: Path) -> None:
    engine = FakeEngine(hold_after=4)
    app = make_app(engine, qwen3tui_home, settings=SETTINGS)
    async with app.run_test(size=(120, 40)) as pilot:
        c = await ready(pilot)
        await send(pilot, PROMPT)
        await wait_for_thread(engine.holding)
        await wait_until(pilot, lambda: c.replies()[-1].pane.tokens == 4, what="4 tokens shown")
        # 9 prompt tokens + 4 thinking tokens so far.
        await wait_until(pilot, lambda: "ctx 13 / 4,096" in status_text(app), what="ctx 13")
        engine.release.set()
        await finish_turn(pilot)
        # At the end, the engine's own count: the prompt + 6 thinking + 6 answer tokens.
        assert "ctx 21 / 4,096" in status_text(app)


async def test_tok_s_is_this_replys_speed_while_it_streams(
    qwen3tui_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(100.0)
    monkeypatch.setattr(live_stats, "monotonic", clock)
    engine = GatedEngine(decode_tok_s=42.0, ttft_s=0.25)
    app = make_app(engine, qwen3tui_home, settings=SETTINGS)
    async with app.run_test(size=(120, 40)) as pilot:
        c = await ready(pilot)
        await send(pilot, "first")
        await finish_turn(pilot)
        assert "42.0 tok/s  │  TTFT 0.25 s" in status_text(app)

        engine.gated = True
        await send(pilot, PROMPT)
        # The previous reply's numbers go as soon as this one starts.
        await wait_until(pilot, lambda: "tok/s" not in status_text(app), what="no old tok/s")
        engine.allow(1)
        await wait_until(pilot, lambda: c.replies()[-1].pane.tokens == 1, what="the 1st token")
        clock.now = 100.5  # five more tokens half a second later: 10 tokens a second
        engine.allow(5)
        await wait_until(pilot, lambda: c.replies()[-1].pane.tokens == 6, what="6 tokens")
        await wait_until(pilot, lambda: "10.0 tok/s" in status_text(app), what="10.0 tok/s")
        assert "TTFT" not in status_text(app)  # the previous reply's is not this one's

        engine.allow(100)
        await finish_turn(pilot)
        assert "42.0 tok/s  │  TTFT 0.25 s" in status_text(app)  # the engine's own numbers


def test_live_speed_waits_for_a_long_enough_stretch(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(10.0)
    monkeypatch.setattr(live_stats, "monotonic", clock)
    live = LiveStats()
    live.prompt_tokens = 100
    assert live.observe([ThinkingDelta("a", 1), ThinkingDelta("b", 2)])
    assert (live.context_used, live.tok_s) == (102, None)
    clock.now += MIN_RATE_WINDOW_S / 2
    live.observe([ThinkingDelta("c", 3)])
    assert live.tok_s is None  # too short a stretch to say
    clock.now = 11.0
    live.observe([ThinkingDone(4, 1.0, False), AnswerDelta("x"), AnswerDelta("y")])
    assert (live.context_used, live.tok_s) == (106, 4.0)  # 4 tokens after the first 2, in 1 s


def test_live_numbers_stop_when_the_engine_reports_its_own() -> None:
    live = LiveStats()
    live.observe([AnswerDelta("x")])
    summary = Summary("stop", "", "x", False, None, False, *_usage_and_timings())
    assert not live.observe([AnswerDelta("y"), summary])
    assert live.ended


def _usage_and_timings() -> tuple[Any, Any]:
    from qwen3tui.engine.events import Timings, Usage

    return Usage(1, 0, 1), Timings()


FULL = StatusInfo(
    model="Qwen/Qwen3-1.7B",
    mode="thinking on/off",
    device="cuda",
    dtype="bfloat16",
    context_used=1204,
    context_length=32768,
    tok_s=825.3,
    ttft_s=0.01,
    state="generating…",
)


def test_a_wide_status_line_shows_everything() -> None:
    assert format_status(FULL, 120) == (
        "Qwen3-1.7B · thinking on/off  │  cuda · bfloat16  │  ctx 1,204 / 32,768"
        "  │  825.3 tok/s  │  TTFT 0.01 s  │  generating…"
    )


@pytest.mark.parametrize(
    ("width", "line"),
    [
        (
            100,
            "Qwen3-1.7B · thinking on/off  │  cuda  │  ctx 1,204 / 32,768  │  825.3 tok/s"
            "  │  generating…",
        ),
        (80, "Qwen3-1.7B · thinking on/off │ ctx 1,204 / 32,768 │ 825.3 tok/s │ generating…"),
        (60, "Qwen3-1.7B │ ctx 1,204 / 32,768 │ 825.3 tok/s │ generating…"),
        (40, "Qwen3-1.7B │ ctx 1.2k/32k │ generating…"),
        (30, "Qwen3-1.7B │ generating…"),
        (12, "Qwen3-1.7B …"),
    ],
)
def test_a_narrow_status_line_leaves_out_the_least_useful_parts_first(
    width: int, line: str
) -> None:
    """TTFT, then dtype, device, mode, the exact numbers, tok/s, the context: never a part cut
    mid-word, until even the model name and the state do not fit."""
    assert format_status(FULL, width) == line
    assert len(line) <= width
