"""A reply is saved while it streams: row at the first token, flushes at most every 0.5 s."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from qwen3tui.store import SessionStore


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def saved_reply(path, message_id):
    """What another process reading the file sees now."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT content, thinking, status FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
    finally:
        conn.close()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def db(tmp_path):
    return tmp_path / "sessions.db"


def test_begin_reply_creates_a_partial_row_at_once(db, clock):
    store = SessionStore.open(db, clock=clock)
    s = store.create_session("m")
    store.add_user_message(s.id, "hi")
    w = store.begin_reply(s.id, thinking_enabled=True, budget=None, sampling={})
    assert saved_reply(db, w.message_id) == ("", "", "partial")
    assert w.order == 1


def test_appends_are_buffered_until_half_a_second_has_passed(db, clock):
    store = SessionStore.open(db, clock=clock)
    s = store.create_session("m")
    w = store.begin_reply(s.id, thinking_enabled=True, budget=None, sampling={})
    w.append_thinking("let me ")
    clock.now += 0.3
    w.append_thinking("think. ")
    assert saved_reply(db, w.message_id) == ("", "", "partial") and w.flushes == 0
    clock.now += 0.2  # 0.5 s since the row was made
    w.append_answer("Hello")
    assert saved_reply(db, w.message_id) == ("Hello", "let me think. ", "partial")
    assert w.flushes == 1
    clock.now += 0.1
    w.append_answer(" world")
    assert saved_reply(db, w.message_id)[0] == "Hello"
    w.finish("complete", {"answer_tokens": 2}, {"total_s": 1.0})
    assert saved_reply(db, w.message_id) == ("Hello world", "let me think. ", "complete")
    m = store.get_session(s.id).messages[0]
    assert (m.usage, m.timings) == ({"answer_tokens": 2}, {"total_s": 1.0})


def test_a_long_stream_writes_no_more_than_twice_a_second(db, clock):
    store = SessionStore.open(db, clock=clock)
    s = store.create_session("m")
    w = store.begin_reply(s.id, thinking_enabled=False, budget=None, sampling={})
    for i in range(200):  # 200 tokens at 50 tokens/s: 4 seconds
        clock.now += 0.02
        w.append_answer(f"t{i} ")
    assert 7 <= w.flushes <= 8
    w.finish("complete")
    assert saved_reply(db, w.message_id)[0] == "".join(f"t{i} " for i in range(200))


def test_explicit_flush_writes_now_and_finish_marks_the_status(db, clock):
    store = SessionStore.open(db, clock=clock)
    s = store.create_session("m")
    w = store.begin_reply(s.id, thinking_enabled=False, budget=None, sampling={})
    w.append_answer("so far")
    w.flush()
    assert saved_reply(db, w.message_id) == ("so far", "", "partial")
    w.finish("cancelled")
    assert saved_reply(db, w.message_id) == ("so far", "", "cancelled")


def test_a_finished_reply_takes_no_more_text_and_statuses_are_checked(db, clock):
    store = SessionStore.open(db, clock=clock)
    s = store.create_session("m")
    w = store.begin_reply(s.id, thinking_enabled=False, budget=None, sampling={})
    with pytest.raises(ValueError):
        w.finish("done")
    w.finish("error", error="out of memory")
    assert store.get_session(s.id).messages[0].error == "out of memory"
    with pytest.raises(RuntimeError):
        w.append_answer("late")
    with pytest.raises(RuntimeError):
        w.finish("complete")


WRITER_SCRIPT = textwrap.dedent("""
    import sys, time
    from qwen3tui.store import SessionStore
    store = SessionStore.open(sys.argv[1])
    s = store.create_session("m")
    store.add_user_message(s.id, "write forever")
    w = store.begin_reply(s.id, thinking_enabled=True, budget=None, sampling={})
    print(w.message_id, flush=True)
    i = 0
    while True:
        w.append_answer(f"word{i} ")
        i += 1
        time.sleep(0.005)
""")


@pytest.mark.slow
def test_a_process_killed_mid_reply_leaves_the_flushed_text_marked_partial(db):
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER_SCRIPT, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        message_id = int(proc.stdout.readline())
        deadline = time.monotonic() + 30
        flushed = ""
        while len(flushed.split()) < 2 and time.monotonic() < deadline:  # at least one flush
            flushed = saved_reply(db, message_id)[0]
            time.sleep(0.05)
        assert flushed, "the writer never flushed"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with SessionStore.open(db) as store:
        assert store.warnings == []
        (session,) = store.list_sessions()
        user, reply = store.get_session(session.id).messages
        assert user.content == "write forever"
        assert reply.status == "partial"
        assert reply.content.startswith(flushed) and len(reply.content) >= len(flushed)
        assert reply.content.startswith("word0 word1 ")
