"""Schema versions: a fresh file, an empty file, every earlier version, and a newer one."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from qwen3tui.store import LATEST_VERSION, SchemaTooNewError, SessionStore
from qwen3tui.store.schema import migrate


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


def build_database_at(path: Path, version: int) -> None:
    """A database as an older qwen3tui at `version` left it, with one exchange if it can."""
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=version)
    if version >= 1:
        conn.execute(
            "INSERT INTO sessions (id, title, created, updated, model, settings) VALUES"
            " ('aa11', 'Old walrus chat', '2025-01-01T00:00:00+00:00',"
            " '2025-01-01T00:00:00+00:00', 'Qwen/Qwen3-1.7B', '{\"thinking\": true}')"
        )
        conn.execute(
            "INSERT INTO messages (session_id, ord, role, content, created, updated)"
            " VALUES ('aa11', 0, 'user', 'tell me about tusks', 't', 't')"
        )
        conn.execute(
            "INSERT INTO messages (session_id, ord, role, content, thinking, status,"
            " thinking_enabled, created, updated) VALUES ('aa11', 1, 'assistant',"
            " 'Tusks are elongated teeth', 'ivory musings', 'complete', 1, 't', 't')"
        )
    conn.close()
    assert user_version(path) == version


def test_a_new_store_is_created_at_the_latest_version_with_wal_and_foreign_keys(tmp_path):
    path = tmp_path / "data" / "sessions.db"
    store = SessionStore.open(path)
    assert store.persistent and store.warnings == []
    conn = store._conn
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0  # and writes wait beyond it
    store.close()


def test_an_empty_file_is_migrated_from_version_zero(tmp_path):
    path = tmp_path / "sessions.db"
    path.write_bytes(b"")
    store = SessionStore.open(path)
    assert store.warnings == []
    s = store.create_session("m")
    store.add_user_message(s.id, "hello")
    store.close()
    assert user_version(path) == LATEST_VERSION


def test_the_default_path_is_under_qwen3tui_home(qwen3tui_home):
    store = SessionStore.open()
    assert store.path == qwen3tui_home / "sessions.db"
    store.close()
    assert (qwen3tui_home / "sessions.db").exists()


@pytest.mark.parametrize("version", range(LATEST_VERSION))
def test_every_earlier_version_migrates_forward_keeping_and_indexing_its_data(tmp_path, version):
    path = tmp_path / "sessions.db"
    build_database_at(path, version)
    store = SessionStore.open(path)
    assert store.warnings == []
    assert user_version(path) == LATEST_VERSION
    if version >= 1:
        s = store.get_session("aa11")
        assert s.title == "Old walrus chat" and s.settings == {"thinking": True}
        assert [m.content for m in s.messages] == [
            "tell me about tusks",
            "Tusks are elongated teeth",
        ]
        assert s.messages[1].thinking_enabled is True
        # Search (added in v2) covers what was stored before it existed.
        assert [h.session_id for h in store.search("walrus")] == ["aa11"]
        assert [h.kind for h in store.search("elongated")] == ["answer"]
        assert store.search("ivory") == []
        assert [h.kind for h in store.search("ivory", include_thinking=True)] == ["thinking"]
    # And the migrated store works as a new one does.
    new = store.create_session("m")
    store.add_user_message(new.id, "a fresh narwhal question")
    assert [h.session_id for h in store.search("narwhal")] == [new.id]
    store.close()


def test_a_store_of_the_previous_release_gets_one_outcome_per_reply(tmp_path):
    """Version 2 saved a reply cut off by max tokens as `complete` (its usage said `length`),
    and a reply whose process was killed stays `partial`: they read as `length` and
    `interrupted` now, with everything else kept."""
    path = tmp_path / "sessions.db"
    build_database_at(path, 2)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "INSERT INTO messages (session_id, ord, role, content, status, usage, thinking_enabled,"
        " created, updated) VALUES ('aa11', 2, 'assistant', 'Tusks grow', 'complete',"
        " '{\"finish_reason\": \"length\"}', 0, 't', 't'),"
        " ('aa11', 3, 'assistant', 'killed mid', 'partial', '{}', 0, 't', 't')"
    )
    conn.close()
    with SessionStore.open(path) as store:
        replies = [m for m in store.get_session("aa11").messages if m.role == "assistant"]
        assert [(m.status, m.outcome.label) for m in replies] == [
            ("complete", ""),
            ("length", "cut off (max tokens)"),
            ("partial", "interrupted"),
        ]
        assert [h.kind for h in store.search("grow")] == ["answer"]  # still indexed


def test_a_newer_schema_is_refused_with_one_line_and_the_file_is_not_changed(tmp_path):
    path = tmp_path / "sessions.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE future (x)")
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(SchemaTooNewError) as caught:
        SessionStore.open(path)
    message = str(caught.value)
    assert "\n" not in message and "newer" in message and str(LATEST_VERSION + 1) in message
    assert path.read_bytes() == before
    assert user_version(path) == LATEST_VERSION + 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sessions.db"]


def test_opening_an_up_to_date_store_twice_runs_no_migration_again(tmp_path):
    path = tmp_path / "sessions.db"
    a = SessionStore.open(path)
    s = a.create_session("m")
    b = SessionStore.open(path)
    assert b.get_session(s.id).model == "m"
    a.close()
    b.close()


OPENER = """
import sys, time
from qwen3tui.store import SessionStore
while time.time() < float(sys.argv[2]):  # start together
    time.sleep(0.001)
SessionStore.open(sys.argv[1]).close()
"""


@pytest.mark.slow
def test_processes_opening_an_old_database_at_once_migrate_it_once(tmp_path):
    import subprocess
    import sys
    import time

    path = tmp_path / "sessions.db"
    build_database_at(path, 1)
    start = str(time.time() + 1.0)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, str(path), start], stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    assert user_version(path) == LATEST_VERSION
    conn = sqlite3.connect(path)
    # One index row per title, message text and thinking: none doubled by a second migration.
    assert conn.execute("SELECT count(*) FROM search_index").fetchone()[0] == 1 + 2 * 2
    conn.close()
