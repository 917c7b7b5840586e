"""The SQLite session store (knows neither torch nor Textual)."""

from __future__ import annotations

from .errors import ImportFormatError, SchemaTooNewError, SessionLookupError, StoreError
from .models import Message, SearchHit, Session, SessionSummary
from .schema import LATEST_VERSION
from .store import SessionStore, make_title
from .writer import FLUSH_INTERVAL_S, ReplyWriter

__all__ = [
    "FLUSH_INTERVAL_S",
    "LATEST_VERSION",
    "ImportFormatError",
    "Message",
    "ReplyWriter",
    "SchemaTooNewError",
    "SearchHit",
    "Session",
    "SessionLookupError",
    "SessionStore",
    "SessionSummary",
    "StoreError",
    "make_title",
]
