"""The SQLite session store (knows neither torch nor Textual)."""

from __future__ import annotations

from .attachments import Attachment, expand_prompt
from .errors import (
    ImportFormatError,
    SchemaTooNewError,
    SessionLookupError,
    StoreError,
    StoreUnavailable,
)
from .models import Message, SearchHit, Session, SessionSummary
from .outcome import Outcome
from .saver import FLUSH_INTERVAL_S, ReplyHandle, SaveState, SessionSaver
from .schema import LATEST_VERSION
from .store import SessionLock, SessionStore, conversation_of, make_title

__all__ = [
    "Attachment",
    "FLUSH_INTERVAL_S",
    "LATEST_VERSION",
    "ImportFormatError",
    "Message",
    "Outcome",
    "ReplyHandle",
    "SaveState",
    "SchemaTooNewError",
    "SearchHit",
    "Session",
    "SessionLookupError",
    "SessionSaver",
    "SessionLock",
    "SessionStore",
    "SessionSummary",
    "StoreError",
    "StoreUnavailable",
    "conversation_of",
    "expand_prompt",
    "make_title",
]
