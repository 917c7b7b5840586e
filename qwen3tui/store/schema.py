"""Schema versions and the ordered forward migrations between them.

The version lives in `PRAGMA user_version`: 0 is an empty file, and step N (1-based) takes a
database from version N-1 to N. A database newer than LATEST_VERSION is refused untouched.
"""

from __future__ import annotations

import sqlite3

from .errors import SchemaTooNewError

# v1: sessions and messages.
_V1 = [
    """CREATE TABLE sessions (
        pk INTEGER PRIMARY KEY,            -- stable integer key, used for search-index rowids
        id TEXT NOT NULL UNIQUE,           -- public id (uuid4 hex)
        title TEXT NOT NULL DEFAULT '',
        created TEXT NOT NULL,             -- ISO 8601, UTC
        updated TEXT NOT NULL,
        model TEXT NOT NULL,
        system_prompt TEXT,
        settings TEXT NOT NULL DEFAULT '{}'  -- JSON: thinking on/off, budget, sampling
    )""",
    "CREATE INDEX sessions_by_updated ON sessions(updated)",
    """CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        ord INTEGER NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
        content TEXT NOT NULL DEFAULT '',  -- user text, or the reply's answer only
        thinking TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'complete'
            CHECK (status IN ('complete', 'partial', 'cancelled', 'error')),
        thinking_enabled INTEGER,          -- NULL for user messages
        budget INTEGER,
        sampling TEXT NOT NULL DEFAULT '{}',
        usage TEXT NOT NULL DEFAULT '{}',
        timings TEXT NOT NULL DEFAULT '{}',
        error TEXT,
        created TEXT NOT NULL,
        updated TEXT NOT NULL,
        UNIQUE (session_id, ord)
    )""",
]

# v2: full-text search. One FTS5 row per searchable text; rowids are derived so triggers can
# replace a row without scanning: a title is -sessions.pk, a message's text is 2*messages.id,
# its thinking 2*messages.id+1. `kind` lets search leave thinking out unless asked.
_MESSAGE_ROWS = """
    INSERT INTO search_index(rowid, session_id, kind, body) VALUES
        (2 * new.id, new.session_id,
         CASE new.role WHEN 'user' THEN 'user' ELSE 'answer' END, new.content),
        (2 * new.id + 1, new.session_id, 'thinking', new.thinking);"""
_V2 = [
    """CREATE VIRTUAL TABLE search_index USING fts5(
        session_id UNINDEXED, kind UNINDEXED, body,
        tokenize = 'porter unicode61 remove_diacritics 2')""",
    """CREATE TRIGGER sessions_index_insert AFTER INSERT ON sessions BEGIN
        INSERT INTO search_index(rowid, session_id, kind, body)
            VALUES (-new.pk, new.id, 'title', new.title);
    END""",
    """CREATE TRIGGER sessions_index_update AFTER UPDATE OF title ON sessions BEGIN
        DELETE FROM search_index WHERE rowid = -old.pk;
        INSERT INTO search_index(rowid, session_id, kind, body)
            VALUES (-new.pk, new.id, 'title', new.title);
    END""",
    """CREATE TRIGGER sessions_index_delete AFTER DELETE ON sessions BEGIN
        DELETE FROM search_index WHERE rowid = -old.pk;
    END""",
    f"""CREATE TRIGGER messages_index_insert AFTER INSERT ON messages BEGIN {_MESSAGE_ROWS}
    END""",
    f"""CREATE TRIGGER messages_index_update AFTER UPDATE OF content, thinking ON messages BEGIN
        DELETE FROM search_index WHERE rowid IN (2 * old.id, 2 * old.id + 1); {_MESSAGE_ROWS}
    END""",
    """CREATE TRIGGER messages_index_delete AFTER DELETE ON messages BEGIN
        DELETE FROM search_index WHERE rowid IN (2 * old.id, 2 * old.id + 1);
    END""",
    # Index what earlier versions stored.
    """INSERT INTO search_index(rowid, session_id, kind, body)
        SELECT -pk, id, 'title', title FROM sessions""",
    """INSERT INTO search_index(rowid, session_id, kind, body)
        SELECT 2 * id, session_id, CASE role WHEN 'user' THEN 'user' ELSE 'answer' END, content
        FROM messages""",
    """INSERT INTO search_index(rowid, session_id, kind, body)
        SELECT 2 * id + 1, session_id, 'thinking', thinking FROM messages""",
]

# v3: reply outcomes get their own statuses ("length" was saved as "complete", a reply left by a
# killed process stays "partial" and reads as interrupted), and a streaming reply is written as
# appended chunks instead of rewriting the whole text (and its search rows) at every flush. The
# chunks are folded into the message when the reply ends. Replies record the model that wrote them.
_V3 = [
    """CREATE TABLE messages_v3 (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        ord INTEGER NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
        content TEXT NOT NULL DEFAULT '',  -- user text, or the reply's answer only
        thinking TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'complete' CHECK (status IN
            ('partial', 'complete', 'length', 'cancelled', 'interrupted', 'error')),
        thinking_enabled INTEGER,          -- NULL for user messages
        budget INTEGER,
        sampling TEXT NOT NULL DEFAULT '{}',
        usage TEXT NOT NULL DEFAULT '{}',
        timings TEXT NOT NULL DEFAULT '{}',
        error TEXT,
        created TEXT NOT NULL,
        updated TEXT NOT NULL,
        model TEXT,                        -- the model that wrote a reply (NULL: not recorded)
        UNIQUE (session_id, ord)
    )""",
    """INSERT INTO messages_v3 SELECT id, session_id, ord, role, content, thinking,
        CASE WHEN role = 'assistant' AND status = 'complete'
                  AND json_valid(usage) AND json_extract(usage, '$.finish_reason') = 'length'
             THEN 'length' ELSE status END,
        thinking_enabled, budget, sampling, usage, timings, error, created, updated, NULL
        FROM messages""",
    "DROP TABLE messages",  # its triggers go with it; DROP fires none, the index stays valid
    "ALTER TABLE messages_v3 RENAME TO messages",
    *(s for s in _V2 if "ON messages BEGIN" in s),
    """CREATE TABLE reply_chunks (
        message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        thinking TEXT NOT NULL DEFAULT '',
        answer TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (message_id, seq)
    ) WITHOUT ROWID""",
]

# v4: files attached to a user's message, kept apart from what was typed (a JSON list of
# {name, size, lines, text}); the model reads them expanded into the prompt.
_V4 = ["ALTER TABLE messages ADD COLUMN attachments TEXT NOT NULL DEFAULT '[]'"]

# v5: a conversation is a tree, so /retry and an edited message keep what they replace as a
# sibling branch. Each message knows its parent (NULL: a first user message); each session knows
# its active leaf, and the active branch is the path from a root to it. `ord` stays the creation
# order (new rows take max + 1, so siblings never collide on it). What earlier versions stored
# is one chain: each message under the one before it, the last one active.
_V5 = [
    "ALTER TABLE messages ADD COLUMN parent_id INTEGER REFERENCES messages(id) ON DELETE CASCADE",
    "ALTER TABLE sessions ADD COLUMN active_leaf INTEGER",  # a message id; NULL: no messages
    """UPDATE messages SET parent_id = (
        SELECT p.id FROM messages AS p
        WHERE p.session_id = messages.session_id AND p.ord < messages.ord
        ORDER BY p.ord DESC LIMIT 1)""",
    """UPDATE sessions SET active_leaf = (
        SELECT m.id FROM messages AS m WHERE m.session_id = sessions.id
        ORDER BY m.ord DESC LIMIT 1)""",
    "CREATE INDEX messages_by_parent ON messages(session_id, parent_id)",
]

MIGRATIONS: list[list[str]] = [_V1, _V2, _V3, _V4, _V5]
LATEST_VERSION = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def check_not_newer(version: int, where: str) -> None:
    if version > LATEST_VERSION:
        raise SchemaTooNewError(
            f"{where} was written by a newer qwen3tui (schema version {version}, this one knows"
            f" up to {LATEST_VERSION}); it was left unchanged -- upgrade qwen3tui to open it"
        )


def migrate(conn: sqlite3.Connection, target: int = LATEST_VERSION, where: str = "database") -> int:
    """Bring `conn` (autocommit mode) up to `target`, one transaction per step. Returns the version.

    Each step re-reads the version under the write lock, so two processes opening an old
    database at once do not both run a step.
    """
    current = schema_version(conn)
    check_not_newer(current, where)
    if current >= target:
        return current  # up to date: no write lock needed (another process may hold it)
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = schema_version(conn)
            check_not_newer(version, where)
            if version >= target:
                conn.execute("COMMIT")
                return version
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
