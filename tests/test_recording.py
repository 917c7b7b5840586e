"""ReplyRecorder: engine events become a saved reply; store failures never stop the reply."""

from __future__ import annotations

import sqlite3

import pytest

from qwen3tui.engine.events import (
    AnswerDelta,
    ContextNotice,
    Summary,
    ThinkingDelta,
    ThinkingDone,
    Timings,
    Usage,
)
from qwen3tui.recording import ReplyRecorder
from qwen3tui.store import SessionStore


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def store(tmp_path, clock):
    s = SessionStore.open(tmp_path / "sessions.db", clock=clock)
    yield s
    s.close()


@pytest.fixture
def session_id(store):
    s = store.create_session("m")
    store.add_user_message(s.id, "question")
    return s.id


def recorder_for(store, session_id, **kw):
    args = {"thinking_enabled": True, "budget": 128, "sampling": {"temperature": 0.6}} | kw
    return ReplyRecorder(store, session_id, **args)


def summary(finish="stop", thinking="Let me see.", answer="Hello world", budget_hit=False):
    return Summary(
        finish_reason=finish,
        thinking=thinking,
        answer=answer,
        thinking_enabled=True,
        thinking_budget=128,
        thinking_budget_hit=budget_hit,
        usage=Usage(prompt_tokens=7, thinking_tokens=3, answer_tokens=2),
        timings=Timings(
            ttft_s=0.25, prefill_tok_s=100.0, decode_tok_s=20.0, thinking_s=0.1, total_s=0.5
        ),
    )


def stream(thinking="Let me see.", answer="Hello world"):
    return [
        ContextNotice(dropped_messages=0, message="fits"),
        ThinkingDelta(text=thinking[:4], thinking_tokens=1),
        ThinkingDelta(text=thinking[4:], thinking_tokens=3),
        ThinkingDone(thinking_tokens=3, seconds=0.1, budget_hit=False),
        AnswerDelta(text=answer[:5]),
        AnswerDelta(text=answer[5:]),
    ]


def reply(store, session_id):
    messages = store.get_session(session_id).messages
    return messages[1] if len(messages) > 1 else None


def test_a_whole_stream_is_saved_complete_with_usage_and_timings(store, session_id):
    rec = recorder_for(store, session_id)
    for event in [*stream(), summary()]:
        rec.on_event(event)
    m = reply(store, session_id)
    assert (m.role, m.thinking, m.content, m.status) == (
        "assistant",
        "Let me see.",
        "Hello world",
        "complete",
    )
    assert (m.thinking_enabled, m.budget, m.sampling) == (True, 128, {"temperature": 0.6})
    assert {k: m.usage[k] for k in ("prompt_tokens", "thinking_tokens", "answer_tokens")} == {
        "prompt_tokens": 7,
        "thinking_tokens": 3,
        "answer_tokens": 2,
    }
    assert m.usage["finish_reason"] == "stop"
    assert m.timings == {
        "ttft_s": 0.25,
        "prefill_tok_s": 100.0,
        "decode_tok_s": 20.0,
        "thinking_s": 0.1,
        "total_s": 0.5,
    }
    assert rec.status == "complete" and rec.warning is None


def test_the_reply_row_appears_at_the_first_token_marked_partial(store, session_id):
    rec = recorder_for(store, session_id)
    rec.on_event(ContextNotice(dropped_messages=1, message="dropped one"))
    assert reply(store, session_id) is None
    rec.on_event(ThinkingDelta(text="Hmm", thinking_tokens=1))
    m = reply(store, session_id)
    assert m is not None and m.status == "partial" and rec.message_id == m.id


def test_streamed_text_is_flushed_every_half_second(store, session_id, clock):
    rec = recorder_for(store, session_id)
    rec.on_event(AnswerDelta(text="one "))
    clock.now += 0.6
    rec.on_event(AnswerDelta(text="two "))
    assert reply(store, session_id).content == "one two "
    rec.on_event(AnswerDelta(text="three"))
    assert reply(store, session_id).content == "one two "
    assert rec.answer == "one two three"


@pytest.mark.parametrize(
    "finish, status", [("stop", "complete"), ("length", "complete"), ("cancelled", "cancelled")]
)
def test_the_finish_reason_sets_the_status(store, session_id, finish, status):
    rec = recorder_for(store, session_id)
    for event in [*stream(), summary(finish=finish)]:
        rec.on_event(event)
    assert reply(store, session_id).status == status


def test_a_failure_keeps_the_partial_text_with_status_error(store, session_id):
    rec = recorder_for(store, session_id)
    for event in stream()[:5]:
        rec.on_event(event)
    rec.fail("CUDA out of memory. Lower --context.")
    m = reply(store, session_id)
    assert (m.status, m.thinking, m.content) == ("error", "Let me see.", "Hello")
    assert m.error == "CUDA out of memory. Lower --context."
    rec.on_event(AnswerDelta(text="late"))  # ignored once finished
    rec.on_event(summary())
    assert reply(store, session_id).status == "error"


def test_a_failure_before_any_token_is_recorded_as_an_empty_error_reply(store, session_id):
    rec = recorder_for(store, session_id)
    rec.fail("model failed")
    m = reply(store, session_id)
    assert (m.status, m.content, m.error) == ("error", "", "model failed")


def test_the_summary_text_is_authoritative(store, session_id):
    rec = recorder_for(store, session_id)
    for event in stream():
        rec.on_event(event)
    rec.on_event(
        summary(
            thinking="Let me see.\n\nConsidering the budget, I'll answer now.",
            answer="Hello world",
            budget_hit=True,
        )
    )
    m = reply(store, session_id)
    assert m.thinking.endswith("answer now.") and m.usage["thinking_budget_hit"] is True


def test_a_summary_without_deltas_still_records_the_reply(store, session_id):
    rec = recorder_for(store, session_id)
    rec.on_event(summary(thinking="", answer=""))
    m = reply(store, session_id)
    assert (m.status, m.content) == ("complete", "")


class DiskFullConnection:
    """A connection whose writes fail as on a full disk (after `full` is set)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.full = False

    def execute(self, sql: str, *args):
        if self.full and sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def test_a_full_disk_mid_reply_keeps_the_reply_going_with_a_warning(tmp_path, clock):
    path = tmp_path / "sessions.db"
    store = SessionStore.open(path, clock=clock)
    s = store.create_session("m")
    store.add_user_message(s.id, "question")
    faulty = DiskFullConnection(store._conn)
    store._conn = faulty
    rec = recorder_for(store, s.id)
    rec.on_event(AnswerDelta(text="saved "))
    clock.now += 1
    rec.on_event(AnswerDelta(text="part "))  # flushed to disk
    faulty.full = True
    clock.now += 1
    rec.on_event(AnswerDelta(text="in memory"))  # this flush fails: the store moves to memory
    assert rec.warning is not None and "database or disk is full" in rec.warning
    rec.on_event(summary(thinking="", answer="saved part in memory"))
    assert rec.status == "complete"
    assert reply(store, s.id).content == "saved part in memory"
    assert not store.persistent
    store.close()
    with SessionStore.open(path) as on_disk:
        m = reply(on_disk, s.id)
        assert (m.content, m.status) == ("saved part ", "partial")


def test_a_store_that_fails_outright_never_raises_into_the_reply(store, session_id):
    rec = recorder_for(store, session_id)
    rec.on_event(AnswerDelta(text="first "))
    store.close()  # every later store call raises
    rec.on_event(AnswerDelta(text="second"))
    rec.on_event(summary(thinking="", answer="first second"))
    assert rec.warning is not None and "could not be saved" in rec.warning
    assert rec.answer == "first second" and rec.status == "complete"
