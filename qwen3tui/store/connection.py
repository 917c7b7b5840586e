"""Opening the database file: pragmas, damaged files, and the in-memory fallback.

Every connection is in autocommit mode (`isolation_level=None`); the store opens its own
short `BEGIN IMMEDIATE` transactions so a second process waits (busy timeout) instead of failing.

Damage is judged by what it costs the user: a damaged search index (derived data) is rebuilt in
place; only a file whose sessions or messages cannot be read is set aside, and never when it was
opened for a command that only reads.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path

from .errors import SchemaTooNewError, StoreError
from .schema import LATEST_VERSION, check_not_newer, migrate, schema_version
from .search import INDEX_TABLES, rebuild_index

BUSY_TIMEOUT_S = 15.0

_CORRUPTION_MARKERS = ("file is not a database", "malformed", "file is encrypted")
# Errors meaning "this file cannot be written (now)": the conversation moves to memory.
_STORAGE_MARKERS = (
    "disk is full",
    "readonly",
    "read-only",
    "disk i/o error",
    "unable to open database file",
    "authorization denied",
)


def is_corruption(err: BaseException) -> bool:
    return isinstance(err, sqlite3.DatabaseError) and any(
        m in str(err).lower() for m in _CORRUPTION_MARKERS
    )


def is_storage_failure(err: BaseException) -> bool:
    return isinstance(err, sqlite3.OperationalError) and any(
        m in str(err).lower() for m in _STORAGE_MARKERS
    )


def _connect(target: str, uri: bool = False) -> sqlite3.Connection:
    return sqlite3.connect(
        target, uri=uri, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
    )


def _configure(conn: sqlite3.Connection, wal: bool) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA foreign_keys = ON")
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
        # WAL + NORMAL: a killed process loses nothing committed; only a power cut may lose
        # the last few flushes.
        conn.execute("PRAGMA synchronous = NORMAL")


def new_memory_database() -> sqlite3.Connection:
    conn = _connect(":memory:")
    _configure(conn, wal=False)
    migrate(conn, where="in-memory store")
    return conn


def memory_copy(source: sqlite3.Connection | None) -> sqlite3.Connection:
    """An in-memory database holding what `source` has (or an empty one if it cannot be read)."""
    conn = _connect(":memory:")
    if source is not None:
        try:
            source.backup(conn)
        except sqlite3.Error:
            conn.close()
            conn = _connect(":memory:")
    _configure(conn, wal=False)
    try:
        migrate(conn, where="in-memory store")
    except SchemaTooNewError:
        raise
    except sqlite3.Error:
        conn.close()
        return new_memory_database()
    return conn


def _first_problem(conn: sqlite3.Connection, table: str | None = None) -> str | None:
    """quick_check's first complaint about the file (or one table and its indexes), or None."""
    pragma = "PRAGMA quick_check(1)" if table is None else f'PRAGMA quick_check("{table}")'
    try:
        result = conn.execute(pragma).fetchone()[0]
    except sqlite3.DatabaseError as err:
        if not is_corruption(err):
            raise
        return str(err)
    return None if result == "ok" else " ".join(result.split())  # one line for the user


def _unreadable(conn: sqlite3.Connection) -> str | None:
    """Why the user's own data (every table but the search index) cannot be read, or None."""
    tables = [
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%'"
            " ESCAPE '\\'"
        )
        if name not in INDEX_TABLES
    ]
    for table in tables:
        problem = _first_problem(conn, table.replace('"', '""'))
        if problem is not None:
            return f"{table}: {problem}"
    return None


def _check_intact(conn: sqlite3.Connection, warnings: list[str] | None, repair: bool) -> None:
    """Raise sqlite3.DatabaseError if the sessions or messages cannot be read.

    Damage elsewhere (the search index) is rebuilt when `repair` is set, and said in `warnings`.
    """
    problem = _first_problem(conn)
    if problem is None:
        return
    unreadable = _unreadable(conn)
    if unreadable is not None:
        raise sqlite3.DatabaseError(f"database disk image is malformed ({unreadable})")
    notes = warnings if warnings is not None else []
    if not repair:
        notes.append(
            f"the search index of {_conn_path(conn)} is damaged ({problem}); your sessions are"
            " intact, and the index is rebuilt the next time qwen3tui opens the store to write"
        )
        return
    try:
        rebuild_index(conn)
    except sqlite3.Error as err:
        notes.append(
            f"the search index of {_conn_path(conn)} is damaged ({problem}) and could not be"
            f" rebuilt ({err}); your sessions are intact, but search may fail"
        )
        return
    notes.append(
        f"the search index of {_conn_path(conn)} was damaged ({problem}); it was rebuilt from"
        " your sessions, which were intact"
    )


def _conn_path(conn: sqlite3.Connection) -> str:
    """The file behind `conn`, for messages."""
    for _seq, name, file in conn.execute("PRAGMA database_list"):
        if name == "main":
            return file or "the in-memory store"
    return "the session store"


def open_file(path: Path, warnings: list[str] | None = None) -> sqlite3.Connection:
    """Open (creating if needed) and migrate the database at `path`.

    A damaged search index is rebuilt (and said in `warnings`). Raises SchemaTooNewError before
    writing anything, sqlite3.DatabaseError for a file whose sessions or messages cannot be
    read, sqlite3.OperationalError when the file or folder cannot be written.
    """
    wait = 0.05
    while True:  # another process holding the database is a wait, never a failure
        conn = _connect(str(path))
        try:
            version = schema_version(conn)  # a non-SQLite file fails here
            check_not_newer(version, str(path))
            _check_intact(conn, warnings, repair=True)
            _configure(conn, wal=True)
            migrate(conn, where=str(path))
            return conn
        except sqlite3.OperationalError as err:
            conn.close()
            if "database is locked" not in str(err).lower():
                raise
        except BaseException:
            conn.close()
            raise
        time.sleep(wait)
        wait = min(wait * 2, 1.0)


def read_only_copy(path: Path, warnings: list[str] | None = None) -> sqlite3.Connection:
    """What `path` holds, copied into memory without writing to it (for read-only folders)."""
    if not path.exists() or path.stat().st_size == 0:
        return new_memory_database()
    uri = path.resolve().as_uri()
    # mode=ro needs the WAL index files; immutable=1 reads a WAL database whose folder is
    # read-only (the last checkpointed state, which is all a closed database has).
    for query in ("?mode=ro", "?immutable=1"):
        try:
            source = _connect(uri + query, uri=True)
        except sqlite3.Error:
            continue
        try:
            check_not_newer(schema_version(source), str(path))
            _check_intact(source, warnings, repair=False)
            return memory_copy(source)
        except SchemaTooNewError:
            raise
        except sqlite3.Error:
            continue
        finally:
            source.close()
    return new_memory_database()


def move_aside(path: Path, now: datetime | None = None) -> Path:
    """Rename a damaged database (and its WAL files) to a timestamped backup; never deletes."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    backup = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while backup.exists():
        backup = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    path.rename(backup)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(backup.with_name(backup.name + suffix))
    return backup


def open_for_reading(path: Path, warnings: list[str]) -> tuple[sqlite3.Connection, bool]:
    """Open the store at `path` for a command that only reads. Returns (connection, persistent).

    The file is never created, renamed, moved aside or migrated, and no session is changed. A
    missing file reads as an empty store; an older schema is migrated in a copy in memory; a
    damaged search index is rebuilt when the file can be written (it is derived data and this
    changes nothing the user wrote), else said in `warnings`. Raises SchemaTooNewError for a
    newer schema, and StoreError, one line, for a file whose sessions cannot be read.
    """
    if not path.exists() or path.stat().st_size == 0:
        return new_memory_database(), False
    try:
        conn = _connect(path.resolve().as_uri() + "?mode=rw", uri=True)
    except sqlite3.Error:
        return read_only_copy(path, warnings), False  # a read-only file or folder
    try:
        version = schema_version(conn)
        check_not_newer(version, str(path))
        _check_intact(conn, warnings, repair=True)
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        if version < LATEST_VERSION:
            copy = memory_copy(conn)
            conn.close()
            return copy, False
        return conn, True
    except SchemaTooNewError:
        conn.close()
        raise
    except sqlite3.DatabaseError as err:
        conn.close()
        if is_corruption(err):
            raise StoreError(
                f"{path} is damaged ({_one_line(err)}); it was left as it is (start qwen3tui"
                " or `qwen3tui ask` to keep it aside and begin a new store)"
            ) from None
        if is_storage_failure(err):
            return read_only_copy(path, warnings), False
        raise


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def open_database(
    path: Path, warnings: list[str], *, for_reading: bool = False
) -> tuple[sqlite3.Connection, bool]:
    """Open the store at `path`. Returns (connection, persistent).

    A file whose sessions cannot be read is moved aside and a fresh one started; a damaged
    search index is rebuilt; a folder that cannot be written gives an in-memory store (with
    what the file held, if it could be read). Each case adds a warning. Raises
    SchemaTooNewError for a newer schema, leaving the file as it was. `for_reading`: see
    `open_for_reading`.
    """
    if for_reading:
        return open_for_reading(path, warnings)
    memory_note = "this conversation is kept in memory only and will not be saved"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        warnings.append(f"cannot create {path.parent} ({err.strerror or err}); {memory_note}")
        return new_memory_database(), False
    try:
        return open_file(path, warnings), True
    except sqlite3.DatabaseError as err:
        if is_corruption(err):
            try:
                backup = move_aside(path)
            except OSError as move_err:
                warnings.append(
                    f"{path} is damaged ({_one_line(err)}) and could not be moved aside"
                    f" ({move_err.strerror or move_err}); {memory_note}"
                )
                return new_memory_database(), False
            warnings.append(
                f"{path} was not a valid session database ({_one_line(err)}); it was kept as"
                f" {backup.name} and a new, empty store was started"
            )
            try:
                return open_file(path), True
            except sqlite3.Error as again:
                warnings.append(f"cannot create a new {path} ({again}); {memory_note}")
                return new_memory_database(), False
        if is_storage_failure(err):
            warnings.append(f"cannot write {path} ({err}); {memory_note}")
            return read_only_copy(path), False
        raise
