"""Errors the session store raises. `str(err)` is always a single line for the user."""

from __future__ import annotations


class StoreError(Exception):
    """A session store problem the user should see as one line."""


class SchemaTooNewError(StoreError):
    """The database was written by a newer qwen3tui; it is left untouched."""


class SessionLookupError(StoreError):
    """No session, or more than one, matches the id the user gave."""


class ImportFormatError(StoreError):
    """A file given to `import` is not a qwen3tui session export."""


class StoreUnavailable(StoreError):
    """The store cannot be written now (disk full, read-only, gone); `reason` says why in words.

    Nothing of the failed write reached the disk. Writing may work again later.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"not saving: {reason}")
        self.reason = reason
