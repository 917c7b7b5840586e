"""Errors the engine raises for bad input: each says what is wrong and how to fix it."""

from __future__ import annotations


class EngineError(Exception):
    """A problem the user can fix. `str(err)` is a single line: the problem, then the fix."""

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} {fix}".strip() if fix else problem)


class ModelNotFoundError(EngineError):
    pass


class ModelLoadError(EngineError):
    pass


class ContextOverflowError(EngineError):
    pass


class DeviceError(EngineError):
    pass


class InvalidOptionError(EngineError):
    """A generation option out of its range: the message names the value and what is allowed."""
