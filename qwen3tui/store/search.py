"""Full-text search over the FTS5 index (titles, user messages, answers; thinking on request).

The index is derived data: every row comes from a session title or a message, so a damaged index
is rebuilt from them (`rebuild_index`) rather than costing the user their store.
"""

from __future__ import annotations

import re
import sqlite3
import unicodedata

from .errors import StoreError
from .models import SearchHit

_KINDS = ("title", "user", "answer")
# What the index's tokenizer keeps as a word: runs of letters and digits.
_WORD = re.compile(r"[^\W_]+")
# A word typed past its stem is looked up by this many first letters (then checked in the text).
BROAD_PREFIX = 3
INDEX_TABLE = "search_index"
# The FTS5 table and the ordinary tables FTS5 keeps it in ("shadow tables").
INDEX_TABLES = (
    INDEX_TABLE,
    *(f"{INDEX_TABLE}_{s}" for s in ("data", "idx", "content", "docsize", "config")),
)
# The rows the triggers of schema.py (v2) keep in the index: a title is -sessions.pk, a
# message's text 2*messages.id, its thinking 2*messages.id+1.
_INDEX_ROWS = (
    "INSERT INTO search_index(rowid, session_id, kind, body) SELECT -pk, id, 'title', title"
    " FROM sessions",
    "INSERT INTO search_index(rowid, session_id, kind, body) SELECT 2 * id, session_id,"
    " CASE role WHEN 'user' THEN 'user' ELSE 'answer' END, content FROM messages",
    "INSERT INTO search_index(rowid, session_id, kind, body) SELECT 2 * id + 1, session_id,"
    " 'thinking', thinking FROM messages",
)


def rebuild_index(conn: sqlite3.Connection) -> None:
    """Rebuild the search index from the sessions and messages, even if its pages are damaged.

    SQLite cannot drop or clear a table whose pages are unreadable (it must walk them to free
    them), and FTS5's own 'rebuild' reads them too. So the index's schema rows are removed
    directly, which orphans its pages, the table is created afresh and refilled, all in one
    transaction (other connections never see the store without its index, which the triggers
    need), and VACUUM then writes a file without the orphaned pages. `conn` is in autocommit
    mode. Raises sqlite3.Error if it cannot be done (nothing is changed then).
    """
    row = conn.execute("SELECT sql FROM sqlite_schema WHERE name = ?", (INDEX_TABLE,)).fetchone()
    if row is None:
        return  # a store from before the index; its migration creates it
    marks = ",".join("?" * len(INDEX_TABLES))
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("PRAGMA writable_schema = ON")
        conn.execute(
            f"DELETE FROM sqlite_schema WHERE type = 'table' AND name IN ({marks})", INDEX_TABLES
        )
        conn.execute("PRAGMA writable_schema = RESET")  # off, and reload the schema
        conn.execute(row[0])
        for statement in _INDEX_ROWS:
            conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.execute("PRAGMA writable_schema = RESET")
        raise
    try:
        conn.execute("VACUUM")
    except sqlite3.OperationalError:
        pass  # busy: the orphaned pages stay until a later open rebuilds and vacuums again


def query_words(query: str) -> list[str]:
    """The words of what a user typed, as the index's tokenizer sees them: lower case, without
    diacritics, punctuation and FTS5 syntax dropped (`C++` is `c`, `NEAR(` is `near`).

    What is left is only letters and digits, so quoting it is always safe."""
    return _WORD.findall(_fold(query))


def _broad_expression(words: list[str]) -> str:
    """A superset of the matches that also holds each word typed past its stem: "quantiza" is
    no prefix of "quantiz" (how "quantization" is kept), but its first letters are."""
    return " AND ".join(
        f'("{word}"* OR "{word[:BROAD_PREFIX]}"*)' if len(word) > BROAD_PREFIX else f'"{word}"*'
        for word in words
    )


def _words(query: str) -> list[str]:
    words = query_words(query)
    if not words:
        raise StoreError("search needs at least one word")
    return words


def _fold(text: str) -> str:
    """Lower case without diacritics, as the index's `unicode61 remove_diacritics 2` keeps it."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def begins_word(word: str, text: str) -> bool:
    """Whether `word` (as `query_words` gives it) begins a word of `text`."""
    return re.search(r"(?<![^\W_])" + re.escape(word), _fold(text)) is not None


def search(
    conn: sqlite3.Connection, query: str, include_thinking: bool = False, limit: int | None = 50
) -> list[SearchHit]:
    """Matching sessions, best first, each with its best-matching snippet.

    Every word typed matches the words it begins ("quant" finds "quantization"), and the words
    of the same stem ("runs" finds "running")."""
    kinds = _KINDS + (("thinking",) if include_thinking else ())
    marks = ",".join("?" * len(kinds))
    words = _words(query)
    try:
        rows = _matches(conn, _broad_expression(words), kinds, marks)
        # Rows the broad query found by a word's first letters only must begin that word. The
        # index stems words ("running" is kept as "run") and FTS5 stems a prefix query's word
        # too, so `"run"*` finds "running" and `"quant"*` finds "quantization".
        stemmed = {word: {r[0] for r in conn.execute(_ROWIDS, (f'"{word}"*',))} for word in words}
    except sqlite3.DatabaseError as err:
        if isinstance(err, sqlite3.OperationalError) and "malformed" not in str(err).lower():
            raise
        raise StoreError(
            "the search index is damaged; it is rebuilt the next time qwen3tui opens the store"
            " (your sessions are intact)"
        ) from None
    found = [
        row[:-1]
        for row in rows
        if all(row[0] in stemmed[word] or begins_word(word, row[-1] or "") for word in words)
    ]
    return _hits(conn, found, limit)


_ROWIDS = "SELECT rowid FROM search_index WHERE search_index MATCH ?"


def _matches(
    conn: sqlite3.Connection, expression: str, kinds: tuple[str, ...], marks: str
) -> list[tuple]:
    return conn.execute(
        f"""SELECT search_index.rowid, search_index.session_id, search_index.kind,
                   snippet(search_index, 2, '[', ']', '…', 16), s.title, s.updated,
                   search_index.body
            FROM search_index JOIN sessions AS s ON s.id = search_index.session_id
            WHERE search_index MATCH ? AND search_index.kind IN ({marks})
            ORDER BY bm25(search_index), s.updated DESC""",
        (expression, *kinds),
    ).fetchall()


def _hits(conn: sqlite3.Connection, rows: list[tuple], limit: int | None) -> list[SearchHit]:
    hits: list[SearchHit] = []
    seen: set[str] = set()
    for rowid, session_id, kind, snippet, title, updated in rows:
        if session_id in seen:
            continue
        seen.add(session_id)
        order = None
        if rowid > 0:  # a message row: rowid is 2*id or 2*id+1
            found = conn.execute("SELECT ord FROM messages WHERE id = ?", (rowid // 2,)).fetchone()
            order = found[0] if found else None
        hits.append(
            SearchHit(
                session_id=session_id,
                title=title,
                snippet=snippet,
                kind=kind,
                message_order=order,
                updated=updated,
                message_id=rowid // 2 if rowid > 0 else None,
            )
        )
        if limit is not None and len(hits) >= limit:
            break
    return hits
