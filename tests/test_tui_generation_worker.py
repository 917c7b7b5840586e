"""The bridge from the engine's worker thread to the UI: mailbox, coalescing, terminal items."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from fake_engine import FakeEngine
from tui_helpers import finish_turn, make_app, ready, send, wait_for_thread, wait_until

from qwen3tui.engine.errors import ContextOverflowError
from qwen3tui.engine.events import (
    AnswerDelta,
    ContextNotice,
    Event,
    Summary,
    ThinkingDelta,
    ThinkingDone,
)
from qwen3tui.engine.info import EngineInfo
from qwen3tui.engine.options import ChatOptions
from qwen3tui.store import Outcome
from qwen3tui.tui.generation_worker import (
    CPU_SHARE,
    DECODE_SWITCH_INTERVAL_S,
    Mailbox,
    UpdatePacer,
    coalesce,
    hand_gil_over_quickly,
    run_generation,
)
from qwen3tui.turn import Stop, TurnEnded


def test_coalesce_merges_runs_of_deltas_and_keeps_the_latest_token_count() -> None:
    items = [
        ThinkingDelta("a", 1),
        ThinkingDelta("b", 2),
        ThinkingDelta("c", 3),
        ThinkingDone(3, 1.0, False),
        AnswerDelta("x"),
        AnswerDelta("y"),
        ContextNotice(1, "dropped"),
        AnswerDelta("z"),
    ]
    assert coalesce(items) == [
        ThinkingDelta("abc", 3),
        ThinkingDone(3, 1.0, False),
        AnswerDelta("xy"),
        ContextNotice(1, "dropped"),
        AnswerDelta("z"),
    ]


def test_mailbox_asks_for_a_wake_only_when_it_was_empty() -> None:
    box = Mailbox()
    assert box.put(AnswerDelta("a")) is True
    assert box.put(AnswerDelta("b")) is False
    assert box.take() == [AnswerDelta("a"), AnswerDelta("b")]
    assert box.take() == []
    assert box.put(AnswerDelta("c")) is True


def run(engine: object, stop: Stop | None = None) -> tuple[list[object], int]:
    box, wakes = Mailbox(), []
    run_generation(
        engine,
        [{"role": "user", "content": "hi"}],
        ChatOptions(),
        stop or Stop(),
        None,
        box,
        lambda: wakes.append(1),
    )
    return box.take(), len(wakes)


def test_a_generation_ends_with_exactly_one_turn_ended_after_the_summary() -> None:
    items, wakes = run(FakeEngine())
    assert isinstance(items[-1], TurnEnded) and isinstance(items[-2], Summary)
    assert sum(isinstance(i, TurnEnded) for i in items) == 1
    # Nobody drained in between: one wake for the whole burst, and one for its end (which
    # is shown at once, however the updates are paced).
    assert wakes == 2
    assert (
        "".join(i.text for i in items if isinstance(i, AnswerDelta))
        == "**Hello** from the fake engine."
    )


def test_a_failing_engine_ends_the_stream_with_an_error_outcome() -> None:
    class Raising(FakeEngine):
        def chat(
            self,
            messages: object,
            options: object,
            cancel: object = None,
            answer_now: object = None,
        ):  # noqa: ANN201
            yield ThinkingDelta("hm", 1)
            raise ContextOverflowError("the prompt is 9000 tokens.", "Start a /new conversation.")

    items, _ = run(Raising())
    assert items[-1].outcome is Outcome.ERROR
    assert items[-1].error == "the prompt is 9000 tokens. Start a /new conversation."


def test_after_a_reply_the_worker_warms_the_engine_for_the_next_turn() -> None:
    engine = FakeEngine()
    run(engine)
    assert engine.warmed == [
        [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "**Hello** from the fake engine."},
        ]
    ]


def test_a_cancelled_reply_is_not_warmed_and_a_failing_warm_up_is_not_the_users_concern() -> None:
    engine, stop = FakeEngine(), Stop()
    stop.cancel()
    run(engine, stop)
    assert engine.warmed == []

    class BrokenWarmUp(FakeEngine):
        def prepare_next_turn(self, messages: object, cancel: object = None) -> int:
            raise RuntimeError("no memory")

    items, _ = run(BrokenWarmUp())
    assert items[-1].outcome is Outcome.COMPLETE  # the reply stands; nothing after it


def test_the_pacer_spaces_costly_updates_to_leave_the_ui_half_its_time() -> None:
    pacer = UpdatePacer(min_interval=0.03, max_interval=0.25, share=0.5)
    assert pacer.delay(now=100.0) == 0.0  # the first update goes at once
    pacer.started(100.0)
    pacer.finished(0.005)  # cheap: as often as the minimum interval allows
    assert pacer.delay(now=100.01) == pytest.approx(0.02)
    pacer.finished(0.08)  # costly: wait twice the cost
    assert pacer.delay(now=100.01) == pytest.approx(0.15)
    pacer.finished(1.0)  # never slower than the maximum
    assert pacer.interval == 0.25


def test_while_the_user_types_stream_updates_wait_for_a_pause_but_not_too_long() -> None:
    pacer = UpdatePacer(
        min_interval=0.03, max_interval=0.25, share=0.5, typing_quiet=0.25, typing_max_wait=0.5
    )
    pacer.started(10.0)
    pacer.finished(0.01)
    pacer.typed(10.1)
    assert pacer.delay(10.1) == pytest.approx(0.25)  # wait for a pause in typing
    pacer.typed(10.3)
    assert pacer.delay(10.3) == pytest.approx(0.2)  # capped: 0.5 s after the last update
    assert pacer.delay(10.6) == 0.0  # typing paused long enough


class FakeCpuClock:
    """The UI thread's CPU time, as the test says it is."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_with_the_model_on_this_cpu_the_ui_keeps_its_cpu_time_to_a_small_share() -> None:
    clock = FakeCpuClock()
    pacer = UpdatePacer(
        min_interval=0.03,
        share=0.5,
        cpu_share=0.05,
        cpu_burst=0.0,  # no head start: the steady state
        cpu_max_interval=1.0,
        cpu_clock=clock,
    )
    assert pacer.delay(now=100.0) == 0.0  # the first update goes at once
    pacer.started(100.0)
    pacer.finished(0.002)  # the drain itself looked cheap ...
    clock.now += 0.02  # ... but the layout and paint after it took 20 ms of the UI thread
    assert pacer.delay(now=100.1) == pytest.approx(0.3)  # 20 ms is 5% of 0.4 s
    clock.now += 0.02  # more work meanwhile (a keystroke's echo) counts too
    assert pacer.delay(now=100.4) == pytest.approx(0.4)
    assert pacer.delay(now=100.9) == 0.0


def test_a_replys_first_updates_go_at_the_full_rate_until_the_cpu_burst_is_spent() -> None:
    clock = FakeCpuClock()
    pacer = UpdatePacer(min_interval=0.03, cpu_share=0.05, cpu_burst=0.1, cpu_clock=clock)
    now, waits = 10.0, []
    for _ in range(5):
        wait = pacer.delay(now)
        waits.append(wait)
        now += wait
        pacer.started(now)
        clock.now += 0.03  # each update costs the UI thread 30 ms
        now += 0.03
    assert waits[:4] == pytest.approx([0.0] * 4, abs=1e-9)  # a short reply streams live
    assert waits[4] == pytest.approx(0.28)  # then 5% of the time: 14 ms in debt, 0.28 s


def test_the_cpu_budget_never_holds_the_text_back_more_than_its_longest_interval() -> None:
    clock = FakeCpuClock()
    pacer = UpdatePacer(cpu_share=0.05, cpu_max_interval=1.0, cpu_clock=clock)
    pacer.started(50.0)
    clock.now += 0.5  # a very costly update
    assert pacer.delay(now=50.2) == pytest.approx(0.8)
    assert pacer.delay(now=51.0) == 0.0


def test_the_cpu_budget_is_for_a_model_on_this_machines_cpu_only() -> None:
    pacer = UpdatePacer()
    local_cpu = EngineInfo(
        "m", "/m", device="cpu", dtype="bfloat16", context_length=1, num_parameters=1
    )
    pacer.pace_for(local_cpu)
    assert pacer.cpu_share == CPU_SHARE
    pacer.pace_for(replace(local_cpu, device="cuda"))  # the GPU decodes: the UI may paint
    assert pacer.cpu_share is None
    pacer.pace_for(replace(local_cpu, server="http://127.0.0.1:8000/v1"))
    assert pacer.cpu_share is None


@pytest.mark.anyio
async def test_the_chat_keeps_to_the_cpu_budget_once_a_model_on_this_cpu_is_ready(
    qwen3tui_home: Path,
) -> None:
    engine = FakeEngine()  # says it computes on "cpu", on this machine
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=(100, 36)) as pilot:
        c = await ready(pilot)
        assert c.pacer.cpu_share == CPU_SHARE


@pytest.mark.anyio
async def test_the_gil_changes_hands_sooner_while_a_model_on_this_cpu_is_open(
    qwen3tui_home: Path,
) -> None:
    default = sys.getswitchinterval()
    engine = FakeEngine()  # says it computes on "cpu", on this machine
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=(100, 36)) as pilot:
        await ready(pilot)
        assert sys.getswitchinterval() == pytest.approx(DECODE_SWITCH_INTERVAL_S)
    assert sys.getswitchinterval() == pytest.approx(default)  # the chat closed: as it was


def test_the_gil_keeps_its_default_pace_for_a_gpu_or_a_server() -> None:
    default = sys.getswitchinterval()
    local_cpu = EngineInfo(
        "m", "/m", device="cpu", dtype="bfloat16", context_length=1, num_parameters=1
    )
    try:
        hand_gil_over_quickly(local_cpu)
        assert sys.getswitchinterval() == pytest.approx(DECODE_SWITCH_INTERVAL_S)
        hand_gil_over_quickly(replace(local_cpu, device="cuda"))
        assert sys.getswitchinterval() == pytest.approx(default)
        hand_gil_over_quickly(local_cpu)
        hand_gil_over_quickly(replace(local_cpu, server="http://127.0.0.1:8000/v1"))
        assert sys.getswitchinterval() == pytest.approx(default)
        # A GPU engine building its kernels in the background keeps its own short interval.
        sys.setswitchinterval(0.0002)
        hand_gil_over_quickly(replace(local_cpu, device="cuda"))
        assert sys.getswitchinterval() == pytest.approx(0.0002)
    finally:
        sys.setswitchinterval(default)


def test_the_item_that_ends_a_turn_always_wakes_the_ui() -> None:
    mailbox = Mailbox()
    assert mailbox.put(AnswerDelta("a")) is True  # was empty: wake
    assert mailbox.put(AnswerDelta("b")) is False  # already waiting to be drained
    assert mailbox.ended is False
    assert mailbox.put(TurnEnded(Outcome.COMPLETE, "", "ab")) is True
    assert mailbox.ended is True


@pytest.mark.anyio
async def test_the_end_of_a_reply_is_shown_at_once_however_long_the_updates_are_spaced(
    qwen3tui_home: Path,
) -> None:
    engine = FakeEngine(hold_after=3)
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=(100, 36)) as pilot:
        c = await ready(pilot)
        c.pacer = UpdatePacer(min_interval=1000.0, max_interval=1000.0)  # one update, then none
        await send(pilot, "why is the sky blue?")
        await wait_for_thread(engine.holding)
        reply = c.replies()[-1]
        await wait_until(pilot, lambda: reply.thinking_text, what="the first update")
        engine.release.set()
        await finish_turn(pilot)  # not 1,000 s later
        assert reply.answer_text == "".join(engine.answer_tokens)


@dataclass
class ThreadRecordingEngine(FakeEngine):
    """Records the thread each reply and warm-up runs on; a warm-up lasts until it is told to
    give way (as the engine's prefills chunk after chunk)."""

    ran_on: list[tuple[str, int]] = field(default_factory=list)

    def chat(self, *args: object, **kwargs: object) -> Iterator[Event]:
        self.ran_on.append(("reply", threading.get_ident()))
        yield from super().chat(*args, **kwargs)  # type: ignore[arg-type]

    def prepare_next_turn(
        self, messages: list[dict[str, str]], cancel: threading.Event | None = None
    ) -> int:
        self.ran_on.append(("warm-up", threading.get_ident()))
        assert cancel is not None
        cancel.wait(30)
        return super().prepare_next_turn(messages, cancel)


@pytest.mark.anyio
async def test_replies_and_warm_ups_share_one_thread_and_a_new_reply_ends_the_warm_up(
    qwen3tui_home: Path,
) -> None:
    """One thread computes, so the CPU kernels keep one OpenMP pool (two slow decode down)."""
    engine = ThreadRecordingEngine()
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=(100, 36)) as pilot:
        await ready(pilot)
        await send(pilot, "one")
        await finish_turn(pilot)
        await wait_until(pilot, lambda: len(engine.ran_on) == 2, what="the warm-up")
        await send(pilot, "two")
        await finish_turn(pilot)  # the warm-up gave way: it would hold the thread for 30 s
        await wait_until(pilot, lambda: len(engine.ran_on) == 4, what="the second warm-up")
    kinds = [kind for kind, _ in engine.ran_on]
    assert kinds == ["reply", "warm-up", "reply", "warm-up"]
    assert len({thread for _, thread in engine.ran_on}) == 1
    assert threading.get_ident() not in {thread for _, thread in engine.ran_on}
