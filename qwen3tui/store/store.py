"""The session store: sessions and their messages in SQLite.

Thread-safe (one lock around one connection): the UI thread may read while a saving thread
writes. Every write is one short `BEGIN IMMEDIATE` transaction. A write never fails because
another process holds the database: it waits, as long as it takes, without holding up this
process's readers. A write the file truly refuses (disk full, read-only, file gone) raises
`StoreUnavailable` and leaves the file as it was; the next write tries again, so writing resumes
by itself once the disk takes it. Nothing is ever written to a memory copy and called saved.

A streaming reply is written as appended chunks (`append_reply`), folded into its message once
when it ends (`finish_reply`): each flush costs the new text only, not the whole reply again.

A session's messages form a tree (each knows its parent); the session's active leaf picks the
branch that is shown and continued. A new message goes at the end of the active branch, or, given
`at`, after the branch's first `at` messages: a sibling of the one there (/retry, an edit), which
keeps the message it replaces on its own branch. Either way the new message becomes the active
leaf, in the same transaction.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from . import export as export_format
from . import search as search_module
from .attachments import Attachment, attachments_from_json, expand_prompt
from .connection import is_storage_failure, open_database, open_file
from .errors import SessionLookupError, StoreError, StoreUnavailable
from .models import Message, SearchHit, Session, SessionSummary
from .outcome import IN_PROGRESS, Outcome

T = TypeVar("T")
TITLE_MAX_CHARS = 60
# How long one write attempt waits in SQLite for another process's lock before this store
# lets its own readers in and tries again (the wait itself has no limit).
LOCK_POLL_S = 0.1
MAX_LOCK_BACKOFF_S = 1.0
_BUSY_MARKERS = ("database is locked", "database table is locked", "database is busy")
_MESSAGE_COLUMNS = (
    "id, session_id, ord, role, content, thinking, status, thinking_enabled,"
    " budget, sampling, usage, timings, created, updated, error, model, attachments, parent_id"
)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def new_session_id() -> str:
    return uuid.uuid4().hex


def make_title(text: str) -> str:
    """A title from the first user message: whitespace collapsed, cut at a word near 60 chars."""
    flat = " ".join(text.split())
    if len(flat) <= TITLE_MAX_CHARS:
        return flat
    cut = flat[:TITLE_MAX_CHARS]
    if " " in cut[TITLE_MAX_CHARS // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,.;:") + "…"


def is_busy(err: BaseException) -> bool:
    return isinstance(err, sqlite3.OperationalError) and any(
        m in str(err).lower() for m in _BUSY_MARKERS
    )


def _reason(err: BaseException) -> str:
    """A storage failure in the words a user needs."""
    text = str(err).lower()
    if "disk is full" in text or "database or disk is full" in text:
        return "the disk is full"
    if "readonly" in text or "read-only" in text:
        return "the session store is read-only"
    if "unable to open" in text:
        return "the session store cannot be opened"
    return str(err)


def _json(text: str | None) -> Any:
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {}


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
        model,
        attachments,
        parent_id,
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
        sampling=_json(sampling),
        usage=_json(usage),
        timings=_json(timings),
        created=created,
        updated=updated,
        error=error,
        model=model,
        attachments=attachments_from_json(_json(attachments)),
        parent_id=parent_id,
    )


class SessionStore:
    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path | None,
        *,
        persistent: bool,
        warnings: list[str],
    ) -> None:
        self._conn = conn
        self._lock = threading.RLock()
        self.path = path
        self.warnings = warnings  # for the user: damaged file moved aside, ...
        # Why writes fail, while they do (None: they work). A store opened without a writable
        # file starts here, holding a read-only copy of what the file had.
        self.unavailable: str | None = None if persistent else _open_failure(warnings)
        self._closing = threading.Event()
        self.on_lock_wait: Callable[[bool], None] | None = None
        """Called with True when a write starts waiting for another process's lock, False when
        it got through. From the writing thread."""
        self._file_conn = persistent  # False: a read-only copy in memory, never written
        self._inode = self._file_inode() if persistent else None
        if persistent:
            conn.execute(f"PRAGMA busy_timeout = {int(LOCK_POLL_S * 1000)}")

    @classmethod
    def open(cls, path: str | Path | None = None, *, for_reading: bool = False) -> SessionStore:
        """Open the store (default: the sessions.db in qwen3tui's data dir).

        `for_reading`: for commands that only read; the file is never created, renamed or
        migrated. Raises SchemaTooNewError (file untouched) for a database from a newer qwen3tui.
        """
        if path is None:
            from qwen3tui import paths

            path = paths.sessions_db_path()
        path = Path(path)
        warnings: list[str] = []
        conn, persistent = open_database(path, warnings, for_reading=for_reading)
        store = cls(conn, path, persistent=persistent, warnings=warnings)
        if persistent and not for_reading:
            store._fold_interrupted_replies()
        return store

    @property
    def persistent(self) -> bool:
        """Whether writes reach the file now."""
        return self.unavailable is None

    def close(self) -> None:
        self._closing.set()
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
        """Run fn in one write transaction, waiting out other processes' locks.

        Raises StoreUnavailable when the file refuses the write. fn must only depend on its
        connection (it may run more than once).
        """
        backoff = LOCK_POLL_S
        waiting = False
        try:
            while True:
                with self._lock:
                    self._ensure_writable()
                    try:
                        return self._transaction(fn)
                    except sqlite3.OperationalError as err:
                        if not is_busy(err):
                            if is_storage_failure(err):
                                self.unavailable = _reason(err)
                                raise StoreUnavailable(self.unavailable) from None
                            raise
                if self._closing.is_set():
                    raise StoreUnavailable("qwen3tui was closed while another program held it")
                if not waiting and self.on_lock_wait is not None:
                    self.on_lock_wait(True)
                waiting = True
                # Outside the lock: this process's readers (the UI) go on meanwhile.
                self._closing.wait(backoff)
                backoff = min(backoff * 2, MAX_LOCK_BACKOFF_S)
        finally:
            if waiting and self.on_lock_wait is not None:
                self.on_lock_wait(False)

    def _file_inode(self) -> int | None:
        try:
            return os.stat(self.path).st_ino if self.path is not None else None
        except OSError:
            return None

    def check_writable(self) -> None:
        """Raise StoreUnavailable unless writes would reach the file now."""
        with self._lock:
            self._ensure_writable()

    def _ensure_writable(self) -> None:
        """Refuse a write to a file that was removed; reopen a file that could not be opened."""
        if self._file_conn:
            if self._file_inode() != self._inode:
                self.unavailable = f"{self.path} was removed or replaced"
                raise StoreUnavailable(self.unavailable)
            self.unavailable = None  # the same file: let the write try (the disk may have room)
            return
        if self.path is None:
            raise StoreUnavailable(self.unavailable or "there is no session file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = open_file(self.path)
        except (sqlite3.Error, OSError, StoreError):
            raise StoreUnavailable(
                self.unavailable or "the session store cannot be opened"
            ) from None
        conn.execute(f"PRAGMA busy_timeout = {int(LOCK_POLL_S * 1000)}")
        old, self._conn = self._conn, conn
        old.close()
        self._file_conn = True
        self._inode = self._file_inode()
        self.unavailable = None

    # -- sessions -----------------------------------------------------------------------

    def create_session(
        self,
        model: str,
        system_prompt: str | None = None,
        settings: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
    ) -> Session:
        session = Session(
            id=session_id or new_session_id(),
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

    def get_session(self, session_id: str, *, through: int | None = None) -> Session:
        """The session with its active branch: root first, each message with its siblings'
        count and its position among them. `through`: the branch that `switch_branch` to that
        message would make active, instead (read only: nothing is switched)."""
        return self._read(lambda c: _load_session(c, session_id, whole_tree=False, through=through))

    def get_tree(self, session_id: str) -> Session:
        """The session with every message of every branch, in creation order (for export)."""
        return self._read(lambda c: _load_session(c, session_id, whole_tree=True))

    def siblings(self, message_id: int) -> list[int]:
        """The ids of the messages with the same parent as this one (itself included), oldest
        first. SessionLookupError for an unknown id."""
        return self._read(lambda c: _siblings(c, message_id))

    def branch_info(self, message_id: int) -> tuple[int, int]:
        """This message's 1-based position among its siblings, and how many there are."""
        ids = self.siblings(message_id)
        return ids.index(message_id) + 1, len(ids)

    def switch_branch(self, session_id: str, message_id: int) -> None:
        """Make the branch through `message_id` the active one: the active leaf becomes the most
        recently created message under it (or itself)."""

        def run(c: sqlite3.Connection) -> None:
            leaf = _newest_leaf_under(c, session_id, message_id)
            c.execute("UPDATE sessions SET active_leaf = ? WHERE id = ?", (leaf, session_id))

        self._write(run)

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
            old = _json(row[0])
            merged = {**(old if isinstance(old, dict) else {}), **settings}
            c.execute(
                "UPDATE sessions SET settings = ? WHERE id = ?", (json.dumps(merged), session_id)
            )

        self._write(run)

    def delete_session(self, session_id: str) -> None:
        self._update_session(session_id, "DELETE FROM sessions", ())

    def session_lock(self, session_id: str) -> SessionLock:
        """The lock one turn holds on a session, so two processes' turns never interleave."""
        return SessionLock(_lock_path(self.path, session_id), self._closing)

    # -- messages -----------------------------------------------------------------------

    @staticmethod
    def _place(c: sqlite3.Connection, session_id: str, at: int | None) -> tuple[int, int | None]:
        """Where a new message goes: its `ord` (creation order) and its parent, which is the
        active leaf, or with `at` the active branch's message before position `at`."""
        row = c.execute("SELECT active_leaf FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            raise SessionLookupError(f"no session with id {session_id!r}")
        order = c.execute(
            "SELECT coalesce(max(ord), -1) + 1 FROM messages WHERE session_id = ?", (session_id,)
        ).fetchone()[0]
        leaf = _active_leaf(c, session_id, row[0])
        if at is None or leaf is None:
            return order, leaf
        branch = _branch_ids(c, leaf)
        if at < 0 or at > len(branch):
            raise StoreError(f"the active branch has no position {at}")
        return order, branch[at - 1] if at > 0 else None

    def add_user_message(
        self,
        session_id: str,
        content: str,
        attachments: Sequence[Attachment] = (),
        *,
        at: int | None = None,
    ) -> int:
        """Save what the user typed (before generation starts) and the files sent with it;
        returns its message id. The first one names the session. `at`: see the module's doc.
        """
        now = now_iso()
        title = make_title(content)

        def run(c: sqlite3.Connection) -> int:
            order, parent = self._place(c, session_id, at)
            cur = c.execute(
                "INSERT INTO messages (session_id, ord, role, content, status, created, updated,"
                " attachments, parent_id) VALUES (?, ?, 'user', ?, 'complete', ?, ?, ?, ?)",
                (session_id, order, content, now, now, _attachments_json(attachments), parent),
            )
            c.execute(
                "UPDATE sessions SET updated = ?, active_leaf = ?,"
                " title = CASE WHEN title = '' THEN ? ELSE title END WHERE id = ?",
                (now, cur.lastrowid, title, session_id),
            )
            return cur.lastrowid or 0

        return self._write(run)

    def begin_reply(
        self,
        session_id: str,
        *,
        thinking_enabled: bool,
        budget: int | None,
        sampling: dict[str, Any],
        model: str | None = None,
        at: int | None = None,
    ) -> int:
        """Create a reply's row now (status `partial`, empty text); returns its message id.
        `at`: see the module's doc (/retry gives the old reply's position)."""
        now = now_iso()

        def run(c: sqlite3.Connection) -> int:
            order, parent = self._place(c, session_id, at)
            cur = c.execute(
                "INSERT INTO messages (session_id, ord, role, status, thinking_enabled, budget,"
                " sampling, created, updated, model, parent_id)"
                " VALUES (?, ?, 'assistant', ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session_id,
                    order,
                    IN_PROGRESS,
                    int(thinking_enabled),
                    budget,
                    json.dumps(sampling),
                    now,
                    now,
                    model,
                    parent,
                ),
            )
            c.execute(
                "UPDATE sessions SET updated = ?, active_leaf = ? WHERE id = ?",
                (now, cur.lastrowid, session_id),
            )
            return cur.lastrowid or 0

        return self._write(run)

    def append_reply(self, message_id: int, *, thinking: str = "", answer: str = "") -> None:
        """Add streamed text to a reply that is being written (one small row, nothing rewritten)."""
        if not thinking and not answer:
            return

        def run(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO reply_chunks (message_id, seq, thinking, answer) VALUES (?,"
                " (SELECT coalesce(max(seq), -1) + 1 FROM reply_chunks WHERE message_id = ?),"
                " ?, ?)",
                (message_id, message_id, thinking, answer),
            )

        self._write(run)

    def finish_reply(
        self,
        message_id: int,
        *,
        thinking: str,
        answer: str,
        outcome: Outcome,
        usage: dict[str, Any] | None = None,
        timings: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        """Write a reply's final text and how it ended; its streamed chunks are dropped."""
        now = now_iso()
        outcome = Outcome(outcome)

        def run(c: sqlite3.Connection) -> None:
            row = c.execute(
                "UPDATE messages SET content = ?, thinking = ?, status = ?, usage = ?,"
                " timings = ?, error = ?, updated = ? WHERE id = ? RETURNING session_id",
                (
                    answer,
                    thinking,
                    outcome.value,
                    json.dumps(usage or {}),
                    json.dumps(timings or {}),
                    error,
                    now,
                    message_id,
                ),
            ).fetchone()
            c.execute("DELETE FROM reply_chunks WHERE message_id = ?", (message_id,))
            if row is not None:
                c.execute("UPDATE sessions SET updated = ? WHERE id = ?", (now, row[0]))

        self._write(run)

    def _fold_interrupted_replies(self) -> None:
        """Fold the chunks of replies whose process died into their messages (searchable then).

        A reply another process is still writing is folded too; that is harmless, as its
        later chunks follow the folded text and its end rewrites the whole text.
        """

        def run(c: sqlite3.Connection) -> None:
            ids = [r[0] for r in c.execute("SELECT DISTINCT message_id FROM reply_chunks")]
            for message_id in ids:
                thinking, answer = _chunk_text(c, message_id)
                c.execute(
                    "UPDATE messages SET thinking = thinking || ?, content = content || ?"
                    " WHERE id = ?",
                    (thinking, answer, message_id),
                )
                c.execute("DELETE FROM reply_chunks WHERE message_id = ?", (message_id,))

        if not self._read(lambda c: c.execute("SELECT 1 FROM reply_chunks LIMIT 1").fetchone()):
            return
        with self._lock:  # one try, no waiting: folding can as well happen at the next open
            try:
                self._transaction(run)
            except sqlite3.OperationalError:
                pass  # locked by another process, or read-only: the chunks are read back anyway

    def conversation(self, session_id: str) -> list[dict[str, str]]:
        """The messages to give the engine to continue this session.

        System prompt first if set; user messages; replies by their answer only (reasoning is
        not sent back). Replies with no answer text (cut off while thinking, failed) are left
        out, as they were never shown to the model as an answer. Attached files are expanded
        into their message's text, as the model read them when it was sent.
        """
        return conversation_of(self.get_session(session_id))

    # -- search, export, import ---------------------------------------------------------

    def search(
        self, query: str, include_thinking: bool = False, limit: int | None = 50
    ) -> list[SearchHit]:
        return self._read(lambda c: search_module.search(c, query, include_thinking, limit))

    def export_json(self, session_id: str) -> dict[str, Any]:
        """The whole tree, every branch (Markdown export has the active branch only)."""
        return export_format.export_json(self.get_tree(session_id))

    def export_markdown(self, session_id: str) -> str:
        return export_format.export_markdown(self.get_session(session_id))

    def import_json(self, data: Any) -> str:
        """Add an exported session (as loaded from JSON) under a new id; returns that id."""
        s = export_format.parse_export(data)
        s.id = new_session_id()

        def run(c: sqlite3.Connection) -> None:
            self._insert_session(c, s)
            # Parents come before their children in an export, so each one's new id is known
            # when its children are written.
            new_ids: dict[int, int] = {}
            for m in s.messages:
                cur = c.execute(
                    "INSERT INTO messages (session_id, ord, role, content, thinking, status,"
                    " thinking_enabled, budget, sampling, usage, timings, created, updated, error,"
                    " model, attachments, parent_id)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                        m.model,
                        _attachments_json(m.attachments),
                        None if m.parent_id is None else new_ids[m.parent_id],
                    ),
                )
                new_ids[m.id] = cur.lastrowid or 0
            leaf = None if s.active_leaf is None else new_ids[s.active_leaf]
            c.execute("UPDATE sessions SET active_leaf = ? WHERE id = ?", (leaf, s.id))

        self._write(run)
        return s.id


def conversation_of(s: Session) -> list[dict[str, str]]:
    """A loaded session's branch as the engine is given it (see `SessionStore.conversation`)."""
    out = [{"role": "system", "content": s.system_prompt}] if s.system_prompt else []
    for m in s.messages:
        if m.role == "user" or m.content:
            out.append({"role": m.role, "content": expand_prompt(m.content, m.attachments)})
    return out


def _newest_leaf_under(c: sqlite3.Connection, session_id: str, message_id: int) -> int:
    found = c.execute(
        "SELECT 1 FROM messages WHERE id = ? AND session_id = ?", (message_id, session_id)
    ).fetchone()
    if found is None:
        raise SessionLookupError(f"session {session_id!r} has no message {message_id}")
    # Children are always newer than their parent, so the newest message under this one has
    # no children: it is the most recent leaf.
    (leaf,) = c.execute(
        """WITH RECURSIVE below(id) AS (
            SELECT ? UNION ALL
            SELECT m.id FROM messages AS m JOIN below AS b ON m.parent_id = b.id
            WHERE m.id > b.id)
        SELECT max(id) FROM below""",
        (message_id,),
    ).fetchone()
    return leaf


def _load_session(
    c: sqlite3.Connection, session_id: str, *, whole_tree: bool, through: int | None = None
) -> Session:
    row = c.execute(
        "SELECT id, title, created, updated, model, system_prompt, settings, active_leaf"
        " FROM sessions WHERE id = ?",
        (session_id,),
    ).fetchone()
    if row is None:
        raise SessionLookupError(f"no session with id {session_id!r}")
    leaf = _active_leaf(c, session_id, row[7])
    if through is not None:
        leaf = _newest_leaf_under(c, session_id, through)
    if whole_tree:
        rows = c.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE session_id = ? ORDER BY ord, id",
            (session_id,),
        ).fetchall()
    else:
        rows = _branch_rows(c, leaf) if leaf is not None else []
    messages = [_message(m) for m in rows]
    for position, m in enumerate(messages):
        m.order = position
    _add_sibling_info(c, session_id, messages)
    _add_unfolded_chunks(c, messages)
    settings = _json(row[6])
    return Session(
        id=row[0],
        title=row[1],
        created=row[2],
        updated=row[3],
        model=row[4],
        system_prompt=row[5],
        settings=settings if isinstance(settings, dict) else {},
        messages=messages,
        active_leaf=leaf,
    )


def _active_leaf(c: sqlite3.Connection, session_id: str, stored: int | None) -> int | None:
    """The session's active leaf; where none is recorded (or it is gone), its newest message."""
    if stored is not None:
        found = c.execute(
            "SELECT 1 FROM messages WHERE id = ? AND session_id = ?", (stored, session_id)
        ).fetchone()
        if found is not None:
            return stored
    row = c.execute("SELECT max(id) FROM messages WHERE session_id = ?", (session_id,)).fetchone()
    return row[0]


# The path from a message up to its root; `parent_id < id` always holds for rows qwen3tui
# writes, and the condition keeps a hand-edited cycle from looping.
_UP_FROM = """WITH RECURSIVE up(id, depth) AS (
    SELECT ?, 0 UNION ALL
    SELECT m.parent_id, u.depth + 1 FROM messages AS m JOIN up AS u ON m.id = u.id
    WHERE m.parent_id IS NOT NULL AND m.parent_id < m.id)"""


def _branch_rows(c: sqlite3.Connection, leaf: int) -> list[tuple[Any, ...]]:
    columns = ", ".join(f"m.{name.strip()}" for name in _MESSAGE_COLUMNS.split(","))
    return c.execute(
        f"{_UP_FROM} SELECT {columns} FROM messages AS m JOIN up USING (id) ORDER BY up.depth DESC",
        (leaf,),
    ).fetchall()


def _branch_ids(c: sqlite3.Connection, leaf: int) -> list[int]:
    rows = c.execute(f"{_UP_FROM} SELECT id FROM up ORDER BY depth DESC", (leaf,)).fetchall()
    return [r[0] for r in rows]


def _siblings(c: sqlite3.Connection, message_id: int) -> list[int]:
    row = c.execute(
        "SELECT session_id, parent_id FROM messages WHERE id = ?", (message_id,)
    ).fetchone()
    if row is None:
        raise SessionLookupError(f"no message with id {message_id}")
    return [
        r[0]
        for r in c.execute(
            "SELECT id FROM messages WHERE session_id = ? AND parent_id IS ? ORDER BY id", row
        ).fetchall()
    ]


def _add_sibling_info(c: sqlite3.Connection, session_id: str, messages: list[Message]) -> None:
    if not messages:
        return
    rows = c.execute(
        "SELECT id, row_number() OVER w, count(*) OVER w FROM messages WHERE session_id = ?"
        " WINDOW w AS (PARTITION BY parent_id ORDER BY id"
        " ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)",
        (session_id,),
    ).fetchall()
    info = {r[0]: (r[1], r[2]) for r in rows}
    for m in messages:
        m.sibling_position, m.sibling_count = info.get(m.id, (1, 1))


def _attachments_json(attachments: Sequence[Attachment]) -> str:
    return json.dumps([a.to_dict() for a in attachments], ensure_ascii=False)


def _chunk_text(c: sqlite3.Connection, message_id: int) -> tuple[str, str]:
    rows = c.execute(
        "SELECT thinking, answer FROM reply_chunks WHERE message_id = ? ORDER BY seq",
        (message_id,),
    ).fetchall()
    return "".join(r[0] for r in rows), "".join(r[1] for r in rows)


def _add_unfolded_chunks(c: sqlite3.Connection, messages: list[Message]) -> None:
    """A reply still being written (or left by a killed process) reads with its chunks."""
    for m in messages:
        if m.status == IN_PROGRESS:
            thinking, answer = _chunk_text(c, m.id)
            m.thinking += thinking
            m.content += answer


def _open_failure(warnings: list[str]) -> str:
    return warnings[-1] if warnings else "the session store cannot be written"


def _lock_path(db_path: Path | None, session_id: str) -> Path | None:
    if db_path is None:
        return None
    return db_path.parent / "locks" / f"{session_id}.lock"


class SessionLock:
    """An exclusive lock on one session across processes (a file lock, freed if a process dies).

    Where no lock file can be made (no `fcntl`, a read-only folder), nothing can interleave on
    disk either, so acquiring succeeds at once.
    """

    def __init__(self, path: Path | None, closing: threading.Event) -> None:
        self.path = path
        self._closing = closing
        self._handle: Any = None

    def try_acquire(self) -> bool:
        if self._handle is not None:
            return True
        try:
            import fcntl
        except ImportError:
            self._handle = False
            return True
        if self.path is None:
            self._handle = False
            return True
        try:
            self.path.parent.mkdir(exist_ok=True)
            handle = open(self.path, "a+b")  # noqa: SIM115 -- held until release()
        except OSError:
            self._handle = False
            return True
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._handle = handle
        return True

    def acquire(self, cancelled: Callable[[], bool] = lambda: False) -> bool:
        """Wait for the lock as long as it takes; False if `cancelled()` or the store closed."""
        while not self.try_acquire():
            if cancelled() or self._closing.wait(LOCK_POLL_S):
                return False
        return True

    def release(self) -> None:
        if self._handle:
            self._handle.close()  # closing the file frees the lock
        self._handle = None
