"""The bridge from the engine's worker thread to the UI: mailbox, coalescing, terminal items."""

from __future__ import annotations

import pytest
from fake_engine import FakeEngine

from qwen3tui.engine.errors import ContextOverflowError
from qwen3tui.engine.events import AnswerDelta, ContextNotice, Summary, ThinkingDelta, ThinkingDone
from qwen3tui.engine.options import ChatOptions
from qwen3tui.store import Outcome
from qwen3tui.tui.generation_worker import (
    Mailbox,
    UpdatePacer,
    coalesce,
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
    assert wakes == 1  # nobody drained in between: one wake for the whole burst
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
