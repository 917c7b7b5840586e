"""The one turn runner: engine events out, the reply saved with one outcome, whoever calls it."""

from __future__ import annotations

import threading

import pytest
from fake_engine import FakeEngine

from qwen3tui.engine.errors import ContextOverflowError
from qwen3tui.engine.events import AnswerDelta, Summary, ThinkingDelta, Timings, Usage
from qwen3tui.engine.options import ChatOptions
from qwen3tui.store import Outcome, SessionSaver, SessionStore
from qwen3tui.turn import Recording, Stop, TurnEnded, WaitingForSession, run_turn

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def store(tmp_path):
    s = SessionStore.open(tmp_path / "sessions.db")
    yield s
    s.close()


@pytest.fixture
def saver(store):
    s = SessionSaver(store)
    yield s
    s.close(timeout=5)


def new_session(saver: SessionSaver, text: str = "hi") -> str:
    session_id = saver.create_session("fake", None, {})
    saver.add_user_message(session_id, text)
    return session_id


def run(engine, saver=None, session_id=None, *, options=None, stop=None, **recording):
    rec = Recording(saver, session_id, **recording) if saver is not None else None
    return list(run_turn(engine, HI, options or ChatOptions(), stop or Stop(), rec))


def last_reply(saver: SessionSaver, session_id: str):
    assert saver.wait_idle(10)
    return saver.store.get_session(session_id).messages[-1]


def test_a_whole_reply_is_yielded_then_saved_complete_with_usage_timings_and_model(saver):
    session_id = new_session(saver)
    items = run(FakeEngine(), saver, session_id, model="fake/Qwen3-Fake")
    ended = items[-1]
    assert isinstance(ended, TurnEnded) and ended.outcome is Outcome.COMPLETE
    assert isinstance(items[-2], Summary)
    assert sum(isinstance(i, TurnEnded) for i in items) == 1
    m = last_reply(saver, session_id)
    assert (m.role, m.status, m.thinking, m.content) == (
        "assistant",
        "complete",
        "Let me think about that.",
        "**Hello** from the fake engine.",
    )
    assert (m.model, m.thinking_enabled, m.sampling["temperature"]) == (
        "fake/Qwen3-Fake",
        True,
        0.6,
    )
    assert m.usage["finish_reason"] == "stop" and m.usage["answer_tokens"] == 6
    assert m.timings["decode_tok_s"] == 42.0


class ScriptedEngine(FakeEngine):
    """Yields the given events, then raises `error` if any."""

    def __init__(self, events, error=None):
        super().__init__()
        self.events, self.error = events, error

    def chat(self, messages, options, cancel=None, answer_now=None):  # noqa: ANN001, ANN201
        yield from self.events
        if self.error is not None:
            raise self.error


def summary(finish="stop", thinking="Let me see.", answer="Hello world", budget_hit=False):
    return Summary(
        finish_reason=finish,
        thinking=thinking,
        answer=answer,
        thinking_enabled=True,
        thinking_budget=128,
        thinking_budget_hit=budget_hit,
        usage=Usage(prompt_tokens=7, thinking_tokens=3, answer_tokens=2),
        timings=Timings(ttft_s=0.25, decode_tok_s=20.0),
    )


@pytest.mark.parametrize(
    ("finish", "outcome", "label"),
    [
        ("stop", Outcome.COMPLETE, ""),
        ("length", Outcome.LENGTH, "cut off (max tokens)"),
        ("cancelled", Outcome.CANCELLED, "stopped"),
    ],
)
def test_the_finish_reason_gives_one_outcome_saved_and_shown_alike(saver, finish, outcome, label):
    session_id = new_session(saver)
    ended = run(ScriptedEngine([AnswerDelta("Hello"), summary(finish)]), saver, session_id)[-1]
    assert ended.outcome is outcome
    saved = last_reply(saver, session_id)
    assert saved.status == outcome.value and saved.outcome is outcome
    assert saved.outcome.label == label


def test_an_engine_error_keeps_the_partial_text_with_the_error_outcome(saver):
    session_id = new_session(saver)
    err = ContextOverflowError("the prompt is 9000 tokens.", "Start a /new conversation.")
    events = [ThinkingDelta("Let me see.", 3), AnswerDelta("Hello")]
    ended = run(ScriptedEngine(events, err), saver, session_id)[-1]
    assert (ended.outcome, ended.error) == (
        Outcome.ERROR,
        "the prompt is 9000 tokens. Start a /new conversation.",
    )
    m = last_reply(saver, session_id)
    assert (m.status, m.thinking, m.content, m.error) == (
        "error",
        "Let me see.",
        "Hello",
        ended.error,
    )


def test_an_unexpected_exception_is_one_line_never_a_traceback(saver):
    session_id = new_session(saver)
    ended = run(ScriptedEngine([], RuntimeError("boom\nsecond line")), saver, session_id)[-1]
    assert ended.error == "generation failed: RuntimeError: boom"
    assert last_reply(saver, session_id).status == "error"


def test_an_engine_that_stops_without_a_summary_is_an_error():
    ended = run(ScriptedEngine([AnswerDelta("x")]))[-1]
    assert ended.outcome is Outcome.ERROR and ended.answer == "x"


def test_the_summary_text_is_authoritative(saver):
    session_id = new_session(saver)
    closing = "Let me see. Considering the limited time, I have to answer now."
    events = [ThinkingDelta("Let me see.", 3), summary(thinking=closing, budget_hit=True)]
    run(ScriptedEngine(events), saver, session_id)
    m = last_reply(saver, session_id)
    assert m.thinking == closing and m.usage["thinking_budget_hit"] is True


def test_interrupt_marks_the_reply_interrupted_and_cancel_marks_it_cancelled(saver):
    for stop_with, outcome in (
        (Stop.interrupt, Outcome.INTERRUPTED),
        (Stop.cancel, Outcome.CANCELLED),
    ):
        session_id = new_session(saver)
        engine, stop = FakeEngine(hold_after=2), Stop()
        turn = run_turn(engine, HI, ChatOptions(), stop, Recording(saver, session_id))
        seen = [next(turn), next(turn)]
        stop_with(stop)
        seen += list(turn)
        assert seen[-1].outcome is outcome
        m = last_reply(saver, session_id)
        assert (m.status, m.thinking) == (outcome.value, "Let me")


def test_a_caller_that_stops_listening_leaves_the_reply_saved_as_interrupted(saver):
    session_id = new_session(saver)
    turn = run_turn(FakeEngine(), HI, ChatOptions(), Stop(), Recording(saver, session_id))
    next(turn), next(turn)
    turn.close()  # e.g. a second Ctrl+C in `ask`
    m = last_reply(saver, session_id)
    assert (m.status, m.thinking) == ("interrupted", "Let me")


def test_the_users_message_is_saved_under_the_session_lock_before_the_reply(saver):
    session_id = saver.create_session("fake", None, {})
    run(FakeEngine(), saver, session_id, user_text="question")
    assert saver.wait_idle(10)
    roles = [(m.role, m.content[:8]) for m in saver.store.get_session(session_id).messages]
    assert roles == [("user", "question"), ("assistant", "**Hello*")]


def test_two_turns_in_one_session_never_interleave(tmp_path):
    """A second process's turn waits for the first; the store gets user, reply, user, reply."""
    first_store = SessionStore.open(tmp_path / "sessions.db")
    second_store = SessionStore.open(tmp_path / "sessions.db")  # as another process would
    first, second = SessionSaver(first_store), SessionSaver(second_store)
    session_id = first.create_session("fake", None, {})
    assert first.wait_idle(10)
    slow = FakeEngine(hold_after=2)
    first_turn = run_turn(
        slow, HI, ChatOptions(), Stop(), Recording(first, session_id, user_text="one")
    )
    next(first_turn)  # holds the session, mid-reply
    assert slow.holding.wait(5) or True
    second_items: list[object] = []
    done = threading.Event()

    def second_turn() -> None:
        rec = Recording(second, session_id, user_text="two")
        for item in run_turn(FakeEngine(), HI, ChatOptions(), Stop(), rec):
            second_items.append(item)
        done.set()

    thread = threading.Thread(target=second_turn)
    thread.start()
    while not second_items:  # the second turn says it waits, and nothing more
        threading.Event().wait(0.01)
    assert isinstance(second_items[0], WaitingForSession) and not done.is_set()
    slow.release.set()
    list(first_turn)
    assert done.wait(10)
    thread.join()
    assert second.wait_idle(10)
    saved = first_store.get_session(session_id).messages
    assert [(m.role, m.content[:3]) for m in saved] == [
        ("user", "one"),
        ("assistant", "**H"),
        ("user", "two"),
        ("assistant", "**H"),
    ]
    for s in (first, second):
        s.close(timeout=5)
    first_store.close()
    second_store.close()


def test_a_retry_turn_saves_its_reply_beside_the_old_one(saver):
    """/retry: no user message, and the reply goes where the old reply was (position 1)."""
    session_id = new_session(saver)
    run(FakeEngine(), saver, session_id)
    old = last_reply(saver, session_id)
    run(FakeEngine(answer_tokens=["Again."]), saver, session_id, at=1)
    new = last_reply(saver, session_id)
    assert new.content == "Again." and new.parent_id == old.parent_id
    assert saver.store.siblings(new.id) == [old.id, new.id]
    assert (new.sibling_position, new.sibling_count) == (2, 2)


def test_an_edit_turn_saves_the_edited_message_beside_the_original_and_its_reply_under_it(saver):
    session_id = new_session(saver, "first question")
    run(FakeEngine(), saver, session_id)
    run(FakeEngine(answer_tokens=["Edited."]), saver, session_id, user_text="edited", at=0)
    assert saver.wait_idle(10)
    branch = saver.store.get_session(session_id).messages
    assert [(m.role, m.content) for m in branch] == [("user", "edited"), ("assistant", "Edited.")]
    assert branch[1].parent_id == branch[0].id
    assert saver.store.branch_info(branch[0].id) == (2, 2)
