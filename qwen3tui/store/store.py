"""The session store: sessions and their messages in SQLite, saved as they happen.

Thread-safe (one lock around one connection): the UI thread may read while a generation
thread writes. Every write is one short `BEGIN IMMEDIATE` transaction. When the file stops
accepting writes (disk full, read-only folder), the store copies itself into memory, adds a
warning, and carries on there; what was already saved is left as it was.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from . import export as export_format
from . import search as search_module
from .connection import is_storage_failure, memory_copy, open_database
from .errors import SessionLookupError, StoreError
from .models import Message, SearchHit, Session, SessionSummary
from .writer import FLUSH_INTERVAL_S, ReplyWriter

T = TypeVar("T")
TITLE_MAX_CHARS = 60
_MESSAGE_COLUMNS = (
    "id, session_id, ord, role, content, thinking, status, thinking_enabled,"
    " budget, sampling, usage, timings, created, updated, error"
)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def make_title(text: str) -> str:
    """A title from the first user message: whitespace collapsed, cut at a word near 60 chars."""
    flat = " ".join(text.split())
    if len(flat) <= TITLE_MAX_CHARS:
        return flat
    cut = flat[:TITLE_MAX_CHARS]
    if " " in cut[TITLE_MAX_CHARS // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,.;:") + "…"


def _message(row: tuple[Any, ...]) -> Message:
    (
        id_,
        session_id,
        order,
        role,
        content,
        thinking,
        status,
        thinking_enabled,
        budget,
        sampling,
        usage,
        timings,
        created,
        updated,
        error,
    ) = row
    return Message(
        id=id_,
        session_id=session_id,
        order=order,
        role=role,
        content=content,
        thinking=thinking,
        status=status,
        thinking_enabled=None if thinking_enabled is None else bool(thinking_enabled),
        budget=budget,
        sampling=json.loads(sampling),
        usage=json.loads(usage),
        timings=json.loads(timings),
        created=created,
        updated=updated,
        error=error,
    )


class SessionStore:
    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path | None,
        *,
        persistent: bool,
        warnings: list[str],
        clock: Callable[[], float],
        flush_interval: float,
    ) -> None:
        self._conn = conn
        self._lock = threading.RLock()
        self.path = path
        self._persistent = persistent
        self.warnings = warnings  # for the user: damaged file moved aside, disk full, ...
        self._clock = clock
        self._flush_interval = flush_interval

    @classmethod
    def open(
        cls,
        path: str | Path | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        flush_interval: float = FLUSH_INTERVAL_S,
    ) -> SessionStore:
        """Open the store (default: the sessions.db in qwen3tui's data dir).

        Raises SchemaTooNewError (file untouched) for a database from a newer qwen3tui.
        """
        if path is None:
            from qwen3tui import paths

            path = paths.sessions_db_path()
        path = Path(path)
        warnings: list[str] = []
        conn, persistent = open_database(path, warnings)
        return cls(
            conn,
            path,
            persistent=persistent,
            warnings=warnings,
            clock=clock,
            flush_interval=flush_interval,
        )

    @property
    def persistent(self) -> bool:
        """False once the store lives only in memory (nothing more reaches the disk)."""
        return self._persistent

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions -------------------------------------------------------------------

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            self._conn.execute("BEGIN")  # one snapshot for all the statements in fn
            try:
                return fn(self._conn)
            finally:
                self._conn.execute("COMMIT")

    def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
            conn.execute("COMMIT")
            return result
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn in one write transaction; if the file refuses writes, move to memory and retry.

        fn must only depend on its connection (it may run twice).
        """
        with self._lock:
            try:
                return self._transaction(fn)
            except sqlite3.OperationalError as err:
                if not self._persistent or not is_storage_failure(err):
                    raise
                self._fall_back_to_memory(err)
                return self._transaction(fn)

    def _fall_back_to_memory(self, err: sqlite3.OperationalError) -> None:
        old = self._conn
        self._conn = memory_copy(old)
        self._persistent = False
        try:
            old.close()
        except sqlite3.Error:
            pass
        self.warnings.append(
            f"could not save to {self.path} ({err}); from now on this conversation is kept in"
            " memory only and will be lost when qwen3tui exits (what was saved before is intact)"
        )

    # -- sessions -----------------------------------------------------------------------

    def create_session(
        self, model: str, system_prompt: str | None = None, settings: dict[str, Any] | None = None
    ) -> Session:
        session = Session(
            id=uuid.uuid4().hex,
            title="",
            created=now_iso(),
            updated="",
            model=model,
            system_prompt=system_prompt,
            settings=dict(settings or {}),
        )
        session.updated = session.created
        self._write(lambda c: self._insert_session(c, session))
        return session

    @staticmethod
    def _insert_session(conn: sqlite3.Connection, s: Session) -> None:
        conn.execute(
            "INSERT INTO sessions (id, title, created, updated, model, system_prompt, settings)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (s.id, s.title, s.created, s.updated, s.model, s.system_prompt, json.dumps(s.settings)),
        )

    def list_sessions(self, limit: int | None = None) -> list[SessionSummary]:
        """Most recently updated first."""
        rows = self._read(
            lambda c: c.execute(
                "SELECT s.id, s.title, s.created, s.updated, s.model,"
                " (SELECT count(*) FROM messages AS m WHERE m.session_id = s.id)"
                " FROM sessions AS s ORDER BY s.updated DESC, s.pk DESC LIMIT ?",
                (-1 if limit is None else limit,),
            ).fetchall()
        )
        return [SessionSummary(*row) for row in rows]

    def get_session(self, session_id: str) -> Session:
        def load(c: sqlite3.Connection) -> Session:
            row = c.execute(
                "SELECT id, title, created, updated, model, system_prompt, settings"
                " FROM sessions WHERE id = ?",
                (session_id,),
            ).fetchone()
            if row is None:
                raise SessionLookupError(f"no session with id {session_id!r}")
            messages = c.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE session_id = ? ORDER BY ord",
                (session_id,),
            ).fetchall()
            return Session(
                id=row[0],
                title=row[1],
                created=row[2],
                updated=row[3],
                model=row[4],
                system_prompt=row[5],
                settings=json.loads(row[6]),
                messages=[_message(m) for m in messages],
            )

        return self._read(load)

    def resolve_id(self, prefix: str) -> str:
        """The one session whose id starts with `prefix`; SessionLookupError lists candidates."""
        wanted = prefix.strip().lower()
        if not wanted:
            raise SessionLookupError("no session id given")
        rows = self._read(
            lambda c: c.execute(
                "SELECT id, title FROM sessions WHERE substr(id, 1, ?) = ? ORDER BY updated DESC",
                (len(wanted), wanted),
            ).fetchall()
        )
        if len(rows) == 1:
            return rows[0][0]
        if not rows:
            raise SessionLookupError(
                f"no session id starts with {prefix!r} (see `qwen3tui sessions list`)"
            )
        shown = ", ".join(f"{sid[:12]} ({title or 'untitled'})" for sid, title in rows[:5])
        more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
        raise SessionLookupError(f"session id {prefix!r} is ambiguous: {shown}{more}")

    def most_recent_id(self) -> str | None:
        row = self._read(
            lambda c: c.execute(
                "SELECT id FROM sessions ORDER BY updated DESC, pk DESC LIMIT 1"
            ).fetchone()
        )
        return row[0] if row else None

    def _update_session(self, session_id: str, sql: str, params: tuple[Any, ...]) -> None:
        def run(c: sqlite3.Connection) -> None:
            if c.execute(sql + " WHERE id = ?", (*params, session_id)).rowcount == 0:
                raise SessionLookupError(f"no session with id {session_id!r}")

        self._write(run)

    def rename_session(self, session_id: str, title: str) -> None:
        title = " ".join(title.split())
        if not title:
            raise StoreError("a session title cannot be empty")
        self._update_session(
            session_id, "UPDATE sessions SET title = ?, updated = ?", (title, now_iso())
        )

    def set_system_prompt(self, session_id: str, system_prompt: str | None) -> None:
        self._update_session(
            session_id,
            "UPDATE sessions SET system_prompt = ?, updated = ?",
            (system_prompt, now_iso()),
        )

    def update_settings(self, session_id: str, settings: dict[str, Any]) -> None:
        """Merge `settings` into the session's settings (keys given replace old values)."""

        def run(c: sqlite3.Connection) -> None:
            row = c.execute("SELECT settings FROM sessions WHERE id = ?", (session_id,)).fetchone()
            if row is None:
                raise SessionLookupError(f"no session with id {session_id!r}")
            merged = {**json.loads(row[0]), **settings}
            c.execute(
                "UPDATE sessions SET settings = ? WHERE id = ?", (json.dumps(merged), session_id)
            )

        self._write(run)

    def delete_session(self, session_id: str) -> None:
        self._update_session(session_id, "DELETE FROM sessions", ())

    # -- messages -----------------------------------------------------------------------

    @staticmethod
    def _next_order(c: sqlite3.Connection, session_id: str) -> int:
        if c.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone() is None:
            raise SessionLookupError(f"no session with id {session_id!r}")
        return c.execute(
            "SELECT coalesce(max(ord), -1) + 1 FROM messages WHERE session_id = ?", (session_id,)
        ).fetchone()[0]

    def add_user_message(self, session_id: str, content: str) -> Message:
        """Save what the user typed (before generation starts). The first one names the session."""
        now = now_iso()
        title = make_title(content)

        def run(c: sqlite3.Connection) -> Message:
            order = self._next_order(c, session_id)
            cur = c.execute(
                "INSERT INTO messages (session_id, ord, role, content, status, created, updated)"
                " VALUES (?, ?, 'user', ?, 'complete', ?, ?)",
                (session_id, order, content, now, now),
            )
            c.execute(
                "UPDATE sessions SET updated = ?,"
                " title = CASE WHEN title = '' THEN ? ELSE title END WHERE id = ?",
                (now, title, session_id),
            )
            return Message(
                id=cur.lastrowid or 0,
                session_id=session_id,
                order=order,
                role="user",
                content=content,
                thinking="",
                status="complete",
                thinking_enabled=None,
                budget=None,
                sampling={},
                usage={},
                timings={},
                created=now,
                updated=now,
            )

        return self._write(run)

    def begin_reply(
        self,
        session_id: str,
        *,
        thinking_enabled: bool,
        budget: int | None,
        sampling: dict[str, Any],
    ) -> ReplyWriter:
        """Create the reply's row now (status `partial`, empty text); call at the first token."""
        now = now_iso()

        def run(c: sqlite3.Connection) -> tuple[int, int]:
            order = self._next_order(c, session_id)
            cur = c.execute(
                "INSERT INTO messages (session_id, ord, role, status, thinking_enabled, budget,"
                " sampling, created, updated) VALUES (?, ?, 'assistant', 'partial', ?, ?, ?, ?, ?)",
                (session_id, order, int(thinking_enabled), budget, json.dumps(sampling), now, now),
            )
            c.execute("UPDATE sessions SET updated = ? WHERE id = ?", (now, session_id))
            return cur.lastrowid or 0, order

        message_id, order = self._write(run)
        return ReplyWriter(
            self,
            message_id=message_id,
            session_id=session_id,
            order=order,
            clock=self._clock,
            interval=self._flush_interval,
        )

    def _save_reply(
        self,
        message_id: int,
        session_id: str,
        *,
        thinking: str,
        answer: str,
        status: str | None = None,
        usage: dict[str, Any] | None = None,
        timings: dict[str, Any] | None = None,
        error: str | None = None,
        final: bool = False,
    ) -> None:
        now = now_iso()

        def run(c: sqlite3.Connection) -> None:
            if final:
                c.execute(
                    "UPDATE messages SET content = ?, thinking = ?, status = ?, usage = ?,"
                    " timings = ?, error = ?, updated = ? WHERE id = ?",
                    (
                        answer,
                        thinking,
                        status,
                        json.dumps(usage or {}),
                        json.dumps(timings or {}),
                        error,
                        now,
                        message_id,
                    ),
                )
                c.execute("UPDATE sessions SET updated = ? WHERE id = ?", (now, session_id))
            else:
                c.execute(
                    "UPDATE messages SET content = ?, thinking = ?, updated = ? WHERE id = ?",
                    (answer, thinking, now, message_id),
                )

        self._write(run)

    def delete_messages_from(self, session_id: str, order: int) -> None:
        """Drop the message at `order` and everything after it (for /retry)."""
        now = now_iso()

        def run(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM messages WHERE session_id = ? AND ord >= ?", (session_id, order))
            c.execute("UPDATE sessions SET updated = ? WHERE id = ?", (now, session_id))

        self._write(run)

    def conversation(self, session_id: str) -> list[dict[str, str]]:
        """The messages to give the engine to continue this session.

        System prompt first if set; user messages; replies by their answer only (reasoning is
        not sent back). Replies with no answer text (cut off while thinking, failed) are left
        out, as they were never shown to the model as an answer.
        """
        s = self.get_session(session_id)
        out = [{"role": "system", "content": s.system_prompt}] if s.system_prompt else []
        for m in s.messages:
            if m.role == "user" or m.content:
                out.append({"role": m.role, "content": m.content})
        return out

    # -- search, export, import ---------------------------------------------------------

    def search(
        self, query: str, include_thinking: bool = False, limit: int | None = 50
    ) -> list[SearchHit]:
        return self._read(lambda c: search_module.search(c, query, include_thinking, limit))

    def export_json(self, session_id: str) -> dict[str, Any]:
        return export_format.export_json(self.get_session(session_id))

    def export_markdown(self, session_id: str) -> str:
        return export_format.export_markdown(self.get_session(session_id))

    def import_json(self, data: Any) -> str:
        """Add an exported session (as loaded from JSON) under a new id; returns that id."""
        s = export_format.parse_export(data)
        s.id = uuid.uuid4().hex

        def run(c: sqlite3.Connection) -> None:
            self._insert_session(c, s)
            c.executemany(
                "INSERT INTO messages (session_id, ord, role, content, thinking, status,"
                " thinking_enabled, budget, sampling, usage, timings, created, updated, error)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        s.id,
                        m.order,
                        m.role,
                        m.content,
                        m.thinking,
                        m.status,
                        None if m.thinking_enabled is None else int(m.thinking_enabled),
                        m.budget,
                        json.dumps(m.sampling),
                        json.dumps(m.usage),
                        json.dumps(m.timings),
                        m.created,
                        m.updated,
                        m.error,
                    )
                    for m in s.messages
                ],
            )

        self._write(run)
        return s.id
