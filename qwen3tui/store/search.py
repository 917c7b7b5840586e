"""Full-text search over the FTS5 index (titles, user messages, answers; thinking on request)."""

from __future__ import annotations

import sqlite3

from .errors import StoreError
from .models import SearchHit

_KINDS = ("title", "user", "answer")


def match_expression(query: str) -> str:
    """Turn what a user typed into a safe FTS5 query: every word must appear (as a word).

    Words are quoted so punctuation and FTS5 operators mean nothing; a trailing `*` keeps
    prefix matching (`quant*` finds "quantization").
    """
    parts = []
    for word in query.split():
        prefix = word.endswith("*")
        word = word.rstrip("*")
        if word:
            parts.append('"' + word.replace('"', '""') + '"' + ("*" if prefix else ""))
    if not parts:
        raise StoreError("search needs at least one word")
    return " AND ".join(parts)


def search(
    conn: sqlite3.Connection, query: str, include_thinking: bool = False, limit: int | None = 50
) -> list[SearchHit]:
    """Matching sessions, best first, each with its best-matching snippet."""
    kinds = _KINDS + (("thinking",) if include_thinking else ())
    marks = ",".join("?" * len(kinds))
    rows = conn.execute(
        f"""SELECT search_index.rowid, search_index.session_id, search_index.kind,
                   snippet(search_index, 2, '[', ']', '…', 16), s.title, s.updated
            FROM search_index JOIN sessions AS s ON s.id = search_index.session_id
            WHERE search_index MATCH ? AND search_index.kind IN ({marks})
            ORDER BY bm25(search_index), s.updated DESC""",
        (match_expression(query), *kinds),
    ).fetchall()
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
            )
        )
        if limit is not None and len(hits) >= limit:
            break
    return hits
