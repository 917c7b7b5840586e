"""A damaged search index is rebuilt from the sessions; only unreadable messages set a file aside.

The damage is real: pages of the database file that belong to the FTS5 index (found with SQLite's
`dbstat` table) are overwritten with zeros, as a bad sector or a torn write would leave them.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from qwen3tui.store import SessionStore, StoreError
from qwen3tui.store.connection import open_database
from qwen3tui.store.search import INDEX_TABLES
from qwen3tui.store.search import search as search_index

SESSIONS = 30


def make_store(path: Path) -> list[str]:
    """A store with enough text that the index spans several pages; returns the session ids."""
    ids = []
    with SessionStore.open(path) as store:
        for i in range(SESSIONS):
            s = store.create_session("m")
            store.add_user_message(s.id, f"question {i} about otters " + "lorem ipsum " * 60)
            ids.append(s.id)
    checkpoint(path)
    return ids


def checkpoint(path: Path) -> None:
    """Move everything from the WAL into the main file, so damaging the file damages the data."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def pages_of(path: Path, tables: tuple[str, ...]) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        marks = ",".join("?" * len(tables))
        return [
            page
            for (page,) in conn.execute(
                f"SELECT pageno FROM dbstat WHERE name IN ({marks}) ORDER BY pageno", tables
            )
        ]
    finally:
        conn.close()


def zero_pages(path: Path, pages: list[int]) -> None:
    conn = sqlite3.connect(path)
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with path.open("r+b") as f:
        for page in pages:
            f.seek((page - 1) * size)
            f.write(b"\0" * size)


def quick_check(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA quick_check(1)").fetchone()[0]
    except sqlite3.DatabaseError as err:
        return str(err)
    finally:
        conn.close()


def set_aside(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".corrupt-" in p.name)


SHADOW_TABLES = [t for t in INDEX_TABLES if t != "search_index"]


@pytest.mark.parametrize("table", [*SHADOW_TABLES, "all of them"])
def test_a_damaged_search_index_is_rebuilt_and_every_session_kept(tmp_path, table):
    path = tmp_path / "sessions.db"
    ids = make_store(path)
    tables = tuple(SHADOW_TABLES) if table == "all of them" else (table,)
    zero_pages(path, pages_of(path, tables))
    assert quick_check(path) != "ok"

    with SessionStore.open(path) as store:
        assert set_aside(tmp_path) == []
        assert store.persistent
        assert sorted(s.id for s in store.list_sessions()) == sorted(ids)
        assert sorted(h.session_id for h in store.search("otters")) == sorted(ids)
        (warning,) = store.warnings
        assert "search index" in warning and "rebuilt" in warning and "\n" not in warning
        # Writing goes on through the index's triggers.
        new = store.create_session("m")
        store.add_user_message(new.id, "a word never seen before: zymurgy")
        assert [h.session_id for h in store.search("zymurgy")] == [new.id]
    assert quick_check(path) == "ok"  # the orphaned pages are gone too


def test_another_connection_open_during_the_rebuild_keeps_writing(tmp_path):
    path = tmp_path / "sessions.db"
    make_store(path)
    zero_pages(path, pages_of(path, ("search_index_data",)))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("SELECT count(*) FROM sessions").fetchone()  # its schema is loaded
    with SessionStore.open(path) as store:
        other.execute(
            "INSERT INTO sessions (id, title, created, updated, model)"
            " VALUES ('x1', 'written by another process: quokka', 'now', 'now', 'm')"
        )
        assert [h.session_id for h in store.search("quokka")] == ["x1"]
    other.close()


def test_a_store_whose_messages_cannot_be_read_is_still_set_aside(tmp_path):
    path = tmp_path / "sessions.db"
    make_store(path)
    zero_pages(path, pages_of(path, ("messages",))[1:])
    with SessionStore.open(path) as store:
        assert len(set_aside(tmp_path)) == 1
        assert store.list_sessions() == []
        (warning,) = store.warnings
        assert "\n" not in warning


def test_opening_for_reading_never_sets_a_damaged_file_aside(tmp_path):
    path = tmp_path / "sessions.db"
    make_store(path)
    zero_pages(path, pages_of(path, ("messages",))[1:])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(StoreError) as caught:
        open_database(path, [], for_reading=True)
    assert "damaged" in str(caught.value) and "\n" not in str(caught.value)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_opening_for_reading_creates_no_file(tmp_path):
    path = tmp_path / "sessions.db"
    conn, persistent = open_database(path, [], for_reading=True)
    assert conn.execute("SELECT count(*) FROM sessions").fetchone() == (0,)
    assert not persistent and list(tmp_path.iterdir()) == []
    conn.close()


def test_opening_for_reading_rebuilds_a_damaged_index_and_changes_no_session(tmp_path):
    path = tmp_path / "sessions.db"
    ids = make_store(path)
    zero_pages(path, pages_of(path, ("search_index_content",)))
    warnings: list[str] = []
    conn, persistent = open_database(path, warnings, for_reading=True)
    assert persistent and len(warnings) == 1 and set_aside(tmp_path) == []
    assert sorted(h.session_id for h in search_index(conn, "otters", limit=None)) == sorted(ids)
    conn.close()


def test_searching_a_damaged_index_is_one_line_not_a_traceback(tmp_path):
    path = tmp_path / "sessions.db"
    make_store(path)
    zero_pages(path, pages_of(path, ("search_index_data",)))
    conn = sqlite3.connect(path)  # opened without the store's check, as if damaged since
    with pytest.raises(StoreError) as caught:
        search_index(conn, "otters")
    assert "search index is damaged" in str(caught.value) and "\n" not in str(caught.value)
    conn.close()
