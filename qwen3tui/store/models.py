"""Plain data objects the store hands out (no database handles inside)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .attachments import Attachment
from .outcome import STATUSES, Outcome

Role = Literal["user", "assistant"]
__all__ = ["STATUSES", "Message", "SearchHit", "Session", "SessionSummary"]
ROLES: tuple[str, ...] = ("user", "assistant")


@dataclass
class Message:
    id: int
    session_id: str
    order: int  # 0-based position in the session
    role: str
    content: str  # the answer only, for a reply
    thinking: str
    status: str
    thinking_enabled: bool | None  # None for user messages
    budget: int | None
    sampling: dict[str, Any]
    usage: dict[str, Any]
    timings: dict[str, Any]
    created: str
    updated: str
    error: str | None = None
    model: str | None = None  # the model that wrote a reply (None: not recorded)
    attachments: list[Attachment] = field(default_factory=list)  # files sent with a user message
    parent_id: int | None = None  # the message it answers or follows (None: a first message)
    # Where it stands among the messages with the same parent (its alternatives, made by /retry
    # or an edit): 1-based position in creation order, and how many there are.
    sibling_position: int = 1
    sibling_count: int = 1

    @property
    def outcome(self) -> Outcome:
        """How the reply ended (a reply still `partial` on disk was interrupted)."""
        return Outcome.from_status(self.status)


@dataclass
class Session:
    id: str
    title: str
    created: str
    updated: str
    model: str
    system_prompt: str | None
    settings: dict[str, Any]
    messages: list[Message] = field(default_factory=list)
    # The last message of the active branch (None: no messages). `messages` is that branch,
    # root first, except from `SessionStore.get_tree`, where it is every message in creation
    # order (each knows its parent).
    active_leaf: int | None = None


@dataclass(frozen=True)
class SessionSummary:
    id: str
    title: str
    created: str
    updated: str
    model: str
    message_count: int


@dataclass(frozen=True)
class SearchHit:
    session_id: str
    title: str
    snippet: str  # matched text, terms wrapped in [ ]
    kind: str  # where it matched: "title", "user", "answer" or "thinking"
    message_order: int | None  # None for a title match
    updated: str
    # The message matched (None for a title): `get_session(id, through=message_id)` is the
    # version of the conversation that holds it.
    message_id: int | None = None
