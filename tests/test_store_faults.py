"""Faults: damaged files, read-only folders, a full disk, and two processes writing at once."""

from __future__ import annotations

import codecs
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from store_helpers import add_reply

from qwen3tui.store import SessionSaver, SessionStore, StoreUnavailable


def add_exchange(store, session_id, question, answer):
    store.add_user_message(session_id, question)
    add_reply(store, session_id, answer)


def backups(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if ".corrupt-" in p.name)


# -- damaged files ---------------------------------------------------------------------


def test_a_non_sqlite_file_is_kept_aside_and_a_fresh_store_starts(tmp_path):
    path = tmp_path / "sessions.db"
    junk = b"this is not a database\n" * 100
    path.write_bytes(junk)
    store = SessionStore.open(path)
    (backup,) = backups(tmp_path)
    assert backup.read_bytes() == junk  # kept, byte for byte
    assert backup.name.startswith("sessions.db.corrupt-")
    (warning,) = store.warnings
    assert backup.name in warning and "\n" not in warning
    assert store.persistent and store.list_sessions() == []
    s = store.create_session("m")
    add_exchange(store, s.id, "still works", "yes")
    store.close()
    with SessionStore.open(path) as again:
        assert again.warnings == [] and again.get_session(s.id).title == "still works"


def test_a_database_with_damaged_pages_is_kept_aside_too(tmp_path):
    path = tmp_path / "sessions.db"
    with SessionStore.open(path) as store:
        s = store.create_session("m")
        for i in range(50):
            add_exchange(store, s.id, f"question {i} " * 20, f"answer {i} " * 50)
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 8 * page
    for start in range(2 * page, len(data) - page, 3 * page):  # scribble over many pages
        data[start : start + page] = b"\xde\xad\xbe\xef" * (page // 4)
    path.write_bytes(bytes(data))
    store = SessionStore.open(path)
    (backup,) = backups(tmp_path)
    assert backup.read_bytes() == bytes(data)
    assert len(store.warnings) == 1 and store.list_sessions() == []
    store.close()


def test_two_damaged_files_in_the_same_second_get_distinct_backups(tmp_path):
    path = tmp_path / "sessions.db"
    for content in (b"first junk file", b"second junk file"):
        path.write_bytes(content * 50)
        SessionStore.open(path).close()
    assert sorted(p.read_bytes()[:6] for p in backups(tmp_path)) == [b"first ", b"second"]


# -- read-only data folder -------------------------------------------------------------


@contextmanager
def read_only_folder():
    """A folder this process cannot write to. As root, permission bits do not bind, so the
    test drops to `nobody` (effective uid) while inside."""
    base = Path(tempfile.mkdtemp(prefix="qwen3tui-ro-"))
    base.chmod(0o755)
    folder = base / "data"
    folder.mkdir()
    try:
        yield folder
    finally:
        folder.chmod(0o755)
        shutil.rmtree(base)


def _import_what_runs_unprivileged() -> None:
    """Python and qwen3tui import some modules at first use (a codec, fcntl, the sessions
    CLI and what it imports). Where Python is installed out of the unprivileged user's reach
    (under /root), those imports must happen before the switch, or which tests ran earlier
    on the same worker decides whether they work."""
    import fcntl  # noqa: F401

    import qwen3tui.paths  # noqa: F401
    import qwen3tui.sessions_cli  # noqa: F401

    codecs.lookup("utf-8-sig")


@contextmanager
def unprivileged():
    if os.geteuid() != 0:
        yield
        return
    _import_what_runs_unprivileged()
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


@contextmanager
def privileged():
    """Back to the real user for a moment (root, when the test runs as root)."""
    euid = os.geteuid()
    if euid == os.getuid():
        yield
        return
    os.seteuid(os.getuid())
    try:
        yield
    finally:
        os.seteuid(euid)


def test_a_read_only_folder_is_said_at_once_and_nothing_is_called_saved():
    with read_only_folder() as folder:
        folder.chmod(0o555)
        with unprivileged():
            store = SessionStore.open(folder / "sessions.db")
            assert not store.persistent
            (warning,) = store.warnings
            assert "memory" in warning and "\n" not in warning
            with pytest.raises(StoreUnavailable):  # never "saved" into a memory copy
                store.create_session("m")
            assert store.list_sessions() == []
            store.close()
        assert list(folder.iterdir()) == []


def test_a_read_only_folder_still_shows_saved_sessions_and_changes_nothing():
    with read_only_folder() as folder:
        path = folder / "sessions.db"
        with SessionStore.open(path) as store:
            old = store.create_session("m")
            add_exchange(store, old.id, "saved before", "intact")
        before = {p.name: p.read_bytes() for p in folder.iterdir()}
        folder.chmod(0o555)
        with unprivileged():
            store = SessionStore.open(path)
            assert not store.persistent and len(store.warnings) == 1
            assert [m.content for m in store.get_session(old.id).messages] == [
                "saved before",
                "intact",
            ]
            with pytest.raises(StoreUnavailable):
                store.add_user_message(old.id, "not saved")
            assert [x.id for x in store.list_sessions()] == [old.id]
            store.close()
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_read_only_folder_that_becomes_writable_is_written_by_the_saver():
    with read_only_folder() as folder:
        folder.chmod(0o555)
        with unprivileged():
            store = SessionStore.open(folder / "sessions.db")
            saver = SessionSaver(store, retry_first=0.01)
            session_id = saver.create_session("m", None, {})
            saver.add_user_message(session_id, "held in memory")
            assert saver.wait_idle(10) is False and saver.unsaved() == [
                "the new session",
                "your message",
            ]
            with privileged():
                folder.chmod(0o777)  # the user fixes the folder
            deadline = time.monotonic() + 10
            while not saver.idle() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert saver.idle()
            saver.close(5)
            store.close()
        with SessionStore.open(folder / "sessions.db") as reopened:
            assert [m.content for m in reopened.get_session(session_id).messages] == [
                "held in memory"
            ]


# -- disk full ---------------------------------------------------------------------------


def fill_disk(store: SessionStore) -> None:
    """Make the database file unable to grow: SQLite then fails with SQLITE_FULL, exactly as on
    a full disk ("database or disk is full")."""
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages}")


def test_a_full_disk_refuses_the_write_damages_nothing_and_takes_it_once_there_is_room(tmp_path):
    path = tmp_path / "sessions.db"
    store = SessionStore.open(path)
    s = store.create_session("m")
    add_exchange(store, s.id, "saved first", "saved answer")
    fill_disk(store)
    big = "a long message " * 20000
    with pytest.raises(StoreUnavailable) as refused:
        store.add_user_message(s.id, big)
    assert refused.value.reason == "the disk is full" and not store.persistent
    assert [m.content for m in store.get_session(s.id).messages] == [
        "saved first",
        "saved answer",
    ]
    store._conn.execute("PRAGMA max_page_count = 1073741823")  # room again
    store.add_user_message(s.id, big)
    assert store.persistent
    store.close()
    with SessionStore.open(path) as on_disk:
        assert on_disk._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert [m.content for m in on_disk.get_session(s.id).messages][-1] == big


# -- concurrent writers ----------------------------------------------------------------

WRITER = textwrap.dedent("""
    import os, sys, time
    from qwen3tui.store import SessionSaver, SessionStore, StoreUnavailable
    path, shared, name, count, go = sys.argv[1:4] + [int(sys.argv[4]), sys.argv[5]]
    store = SessionStore.open(path)
    own = store.create_session(name)
    print(own.id, flush=True)
    while not os.path.exists(go):  # start together, so the two really compete
        time.sleep(0.001)
    for i in range(count):
        store.add_user_message(shared, f"{name}-{i}")
        store.add_user_message(own.id, f"{name}-{i}")
        if i % 10 == 0:
            reply = store.begin_reply(shared, thinking_enabled=False, budget=None, sampling={})
            store.finish_reply(reply, thinking="", answer=f"{name}-reply-{i}", outcome="complete")
        time.sleep(0.002)  # a pause between turns, as in real use, lets the other one in
    assert store.warnings == [], store.warnings
""")


@pytest.mark.slow
def test_two_processes_writing_hundreds_of_messages_lose_nothing(tmp_path):
    path = tmp_path / "sessions.db"
    count = 300
    with SessionStore.open(path) as store:
        shared = store.create_session("shared").id
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), shared, name, str(count), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("alpha", "beta")
    ]
    own_ids = [p.stdout.readline().strip() for p in procs]
    go.touch()
    results = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in results]
    with SessionStore.open(path) as store:
        messages = store.get_session(shared).messages
        assert [m.order for m in messages] == list(range(len(messages)))
        replies_each = len(range(0, count, 10))
        assert len(messages) == 2 * (count + replies_each)
        for name, own_id in zip(("alpha", "beta"), own_ids, strict=True):
            users = [
                m.content for m in messages if m.role == "user" and m.content.startswith(name + "-")
            ]
            assert users == [f"{name}-{i}" for i in range(count)]  # all there, in order
            replies = [
                m.content
                for m in messages
                if m.role == "assistant" and m.content.startswith(name + "-")
            ]
            assert replies == [f"{name}-reply-{i}" for i in range(0, count, 10)]
            own = store.get_session(own_id).messages
            assert [m.content for m in own] == [f"{name}-{i}" for i in range(count)]
        writers = [m.content.split("-")[0] for m in messages]
        switches = sum(a != b for a, b in zip(writers[:-1], writers[1:], strict=True))
        assert switches > 1  # the two really ran at the same time
        assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == (
            len(messages) + 2 * count
        )
        conn.close()
