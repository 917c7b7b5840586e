"""How a reply ended: one table with one label each, used by the store, `ask`, export and the TUI.

A reply's row says `partial` while it is being written. If the process dies before the reply
ends, `partial` is what stays on disk, and it reads back as `interrupted`.
"""

from __future__ import annotations

from enum import Enum


class Outcome(str, Enum):
    COMPLETE = "complete"  # the model ended its reply
    LENGTH = "length"  # cut off by the max-tokens limit
    CANCELLED = "cancelled"  # stopped by the user (Esc, Ctrl+C)
    INTERRUPTED = "interrupted"  # the process was closed or killed mid-reply
    ERROR = "error"  # generation failed

    @property
    def label(self) -> str:
        """How the outcome is shown to people (empty for a reply that ended normally)."""
        return _LABELS[self]

    @classmethod
    def from_status(cls, status: str) -> Outcome:
        """The outcome of a stored status; a reply still `partial` on disk was interrupted."""
        if status == IN_PROGRESS:
            return cls.INTERRUPTED
        return cls(status)

    @classmethod
    def from_finish_reason(cls, finish_reason: str) -> Outcome:
        """The outcome of an engine's finish reason ("stop", "length", "cancelled")."""
        return _FROM_FINISH.get(finish_reason, cls.COMPLETE)


_LABELS = {
    Outcome.COMPLETE: "",
    Outcome.LENGTH: "cut off (max tokens)",
    Outcome.CANCELLED: "stopped",
    Outcome.INTERRUPTED: "interrupted",
    Outcome.ERROR: "failed",
}
_FROM_FINISH = {"stop": Outcome.COMPLETE, "length": Outcome.LENGTH, "cancelled": Outcome.CANCELLED}

IN_PROGRESS = "partial"
"""The stored status of a reply that is being written (or was, when its process died)."""

STATUSES: tuple[str, ...] = (IN_PROGRESS, *(o.value for o in Outcome))
"""Every status a message row may hold."""
