"""Saving as it happens: a reply streams to disk as appended chunks, at most every 0.5 s, written
by the saver's own thread; a lock is a wait, a full or read-only disk is said and recovered from."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from qwen3tui.store import Outcome, SaveState, SessionSaver, SessionStore


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def on_disk(path, message_id):
    """(thinking, answer, status) of a reply as another process reading the file sees it."""
    conn = sqlite3.connect(path)
    try:
        status, thinking, answer = conn.execute(
            "SELECT status, thinking, content FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        for t, a in conn.execute(
            "SELECT thinking, answer FROM reply_chunks WHERE message_id = ? ORDER BY seq",
            (message_id,),
        ):
            thinking, answer = thinking + t, answer + a
        return thinking, answer, status
    finally:
        conn.close()


def saved_soon(saver: SessionSaver, timeout: float = 10.0) -> bool:
    """Whether the saver gets everything to disk (retrying a store that refused) in time."""
    deadline = time.monotonic() + timeout
    while not saver.idle():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def db(tmp_path):
    return tmp_path / "sessions.db"


def started_reply(db, clock):
    store = SessionStore.open(db)
    saver = SessionSaver(store, clock=clock)
    session_id = saver.create_session("m", None, {})
    saver.add_user_message(session_id, "hi")
    handle = saver.begin_reply(session_id, thinking_enabled=True, budget=None, sampling={})
    assert saver.wait_idle(10)
    return store, saver, session_id, handle


def test_streamed_text_reaches_the_disk_at_most_every_half_second(db):
    clock = FakeClock()
    store, saver, _, handle = started_reply(db, clock)
    assert on_disk(db, handle.message_id) == ("", "", "partial")
    saver.append(handle, thinking="let me think. ")
    saver.append(handle, answer="Hello")
    time.sleep(0.1)  # the saver thread has had its chance; the half second has not passed
    assert on_disk(db, handle.message_id) == ("", "", "partial")
    clock.now += 0.5
    saver.append(handle, answer=" world")  # wakes the saver: the text is due now
    deadline = time.monotonic() + 10
    while on_disk(db, handle.message_id)[1] != "Hello world" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert on_disk(db, handle.message_id) == ("let me think. ", "Hello world", "partial")
    saver.finish(handle, Outcome.LENGTH, usage={"answer_tokens": 2})
    assert saver.close(10)
    assert on_disk(db, handle.message_id) == ("let me think. ", "Hello world", "length")
    store.close()


class CountingConnection:
    """Counts the text qwen3tui hands to SQLite in statement parameters."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.text_bytes = 0

    def execute(self, sql: str, params: tuple = ()):  # noqa: ANN201
        self.text_bytes += sum(len(p.encode()) for p in params if isinstance(p, str))
        return self._conn.execute(sql, params)

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._conn, name)


def test_each_flush_writes_only_the_new_text(db):
    """The text written while a reply streams stays within 4x the text saved: each flush appends
    only the new text (before, every flush rewrote the whole reply and re-indexed it for
    search: 240x for a 25.7 KB reply), and the final text is written and indexed once."""
    clock = FakeClock()
    store, saver, session_id, handle = started_reply(db, clock)
    counting = CountingConnection(store._conn)
    store._conn = counting
    text = ""
    for i in range(400):  # a 28.8 KB reply, flushed 400 times
        piece = f"word{i:04d} " * 8
        text += piece
        clock.now += 0.5
        saver.append(handle, answer=piece)
        assert saver.wait_idle(10)
    saver.finish(handle, Outcome.COMPLETE)
    assert saver.close(10)
    store._conn = counting._conn
    assert store.get_session(session_id).messages[-1].content == text
    assert counting.text_bytes <= 4 * len(text.encode()), f"{counting.text_bytes} for {len(text)}"
    store.close()


def test_wait_idle_is_true_only_once_everything_is_on_disk(db):
    clock = FakeClock()
    store, saver, _, handle = started_reply(db, clock)
    saver.append(handle, answer="not yet due")
    assert not saver.idle()
    assert saver.wait_idle(10)  # flushes what is due later, now
    assert on_disk(db, handle.message_id)[1] == "not yet due"
    saver.close(10)
    store.close()


def test_a_lock_held_by_another_process_is_a_wait_not_a_failure(db):
    store = SessionStore.open(db)
    states: list[SaveState] = []
    saver = SessionSaver(store, on_change=states.append)
    session_id = saver.create_session("m", None, {})
    assert saver.wait_idle(10)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # as a large `sessions import` in another process would
    saver.add_user_message(session_id, "hello while locked")
    deadline = time.monotonic() + 10
    while not any(s.waiting_for_lock for s in states) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert any(s.waiting_for_lock for s in states)
    assert store.list_sessions()[0].message_count == 0  # readers are not held up meanwhile
    assert not saver.idle() and saver.state.saving
    holder.execute("COMMIT")
    holder.close()
    assert saver.wait_idle(10)
    assert [m.content for m in store.get_session(session_id).messages] == ["hello while locked"]
    assert not states[-1].waiting_for_lock and states[-1].saving  # the wait is over
    saver.close(10)
    store.close()


def test_a_full_disk_keeps_every_write_in_memory_and_writes_it_when_space_returns(db):
    class FlakyDisk(SessionStore):
        full = False

        def _transaction(self, fn):  # noqa: ANN001, ANN202
            if self.full:
                raise sqlite3.OperationalError("database or disk is full")
            return super()._transaction(fn)

    store = FlakyDisk.open(db)
    states: list[SaveState] = []
    saver = SessionSaver(store, on_change=states.append, retry_first=0.01)
    session_id = saver.create_session("m", None, {})
    assert saver.wait_idle(10)
    store.full = True
    saver.add_user_message(session_id, "kept")
    handle = saver.begin_reply(session_id, thinking_enabled=False, budget=None, sampling={})
    saver.append(handle, answer="an answer")
    saver.finish(handle, Outcome.COMPLETE)
    assert saver.wait_idle(10) is False  # said at once, not after a timeout
    assert saver.state.unavailable == "the disk is full"
    assert saver.unsaved() == ["your message", "the reply"]
    assert store.get_session(session_id).messages == []  # nothing claimed that is not on disk
    store.full = False
    assert saved_soon(saver)
    saved = store.get_session(session_id).messages
    assert [(m.role, m.content, m.status) for m in saved] == [
        ("user", "kept", "complete"),
        ("assistant", "an answer", "complete"),
    ]
    assert states[0].unavailable == "the disk is full" and states[-1].saving
    saver.close(10)
    store.close()


def test_a_store_turned_read_only_says_so_and_writes_when_writable_again(db):
    store = SessionStore.open(db)
    saver = SessionSaver(store, retry_first=0.01)
    store._conn.execute("PRAGMA query_only = 1")  # SQLite's own "readonly database" refusal
    session_id = saver.create_session("m", None, {})
    assert saver.wait_idle(10) is False
    assert saver.state.unavailable == "the session store is read-only"
    store._conn.execute("PRAGMA query_only = 0")
    assert saved_soon(saver)
    assert store.get_session(session_id).id == session_id
    saver.close(10)
    store.close()


def test_a_removed_store_file_is_never_written_in_secret(db):
    store = SessionStore.open(db)
    saver = SessionSaver(store, retry_first=0.01)
    session_id = saver.create_session("m", None, {})
    assert saver.wait_idle(10)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{db}{suffix}"):
            os.unlink(f"{db}{suffix}")
    saver.add_user_message(session_id, "lost?")
    assert saver.wait_idle(10) is False
    assert "removed" in (saver.state.unavailable or "")
    assert saver.unsaved() == ["your message"]
    saver.close(0)
    store.close()


WRITER_SCRIPT = textwrap.dedent("""
    import sys, time
    from qwen3tui.store import SessionSaver, SessionStore
    store = SessionStore.open(sys.argv[1])
    saver = SessionSaver(store)
    sid = saver.create_session("m", None, {})
    saver.add_user_message(sid, "write forever")
    handle = saver.begin_reply(sid, thinking_enabled=True, budget=None, sampling={})
    saver.wait_idle()
    print(handle.message_id, flush=True)
    i = 0
    while True:
        saver.append(handle, answer=f"word{i} ")
        i += 1
        time.sleep(0.005)
""")


@pytest.mark.slow
def test_a_process_killed_mid_reply_leaves_the_flushed_text_which_reads_as_interrupted(db):
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER_SCRIPT, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        message_id = int(proc.stdout.readline())
        deadline = time.monotonic() + 30
        flushed = ""
        while len(flushed.split()) < 2 and time.monotonic() < deadline:  # at least one flush
            flushed = on_disk(db, message_id)[1]
            time.sleep(0.05)
        assert flushed, "the writer never flushed"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with SessionStore.open(db) as store:  # folds the killed reply's chunks into its message
        (session,) = store.list_sessions()
        user, reply = store.get_session(session.id).messages
        assert user.content == "write forever"
        assert reply.status == "partial" and reply.outcome is Outcome.INTERRUPTED
        assert reply.outcome.label == "interrupted"
        assert reply.content.startswith(flushed) and reply.content.startswith("word0 word1 ")
        assert store.search("word1")[0].session_id == session.id  # searchable once folded


def test_a_saver_never_blocks_its_caller_on_the_disk(db):
    """Handing over a write returns at once even while the store waits for a lock."""
    store = SessionStore.open(db)
    saver = SessionSaver(store)
    session_id = saver.create_session("m", None, {})
    assert saver.wait_idle(10)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    returned = threading.Event()
    threading.Thread(
        target=lambda: (saver.add_user_message(session_id, "x"), returned.set())
    ).start()
    assert returned.wait(5)
    holder.execute("COMMIT")
    holder.close()
    assert saver.close(10)
    store.close()


def test_a_reply_whose_row_can_never_be_made_is_said_and_does_not_hold_up_idle(db):
    store = SessionStore.open(db)
    states: list[SaveState] = []
    saver = SessionSaver(store, on_change=states.append)
    handle = saver.begin_reply("no-such-session", thinking_enabled=False, budget=None, sampling={})
    saver.append(handle, answer="text")  # still streaming: nothing of it can ever be written
    deadline = time.monotonic() + 10
    while not saver.idle() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert saver.idle()
    saver.finish(handle, Outcome.COMPLETE)
    assert saver.wait_idle(10)
    assert any(s.dropped and "could not be saved" in s.dropped for s in states)
    saver.close(5)
    store.close()
