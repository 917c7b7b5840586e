"""Writing finished replies straight into a store, for tests that need saved sessions."""

from __future__ import annotations

from typing import Any

from qwen3tui.store import Outcome, SessionStore


def add_reply(
    store: SessionStore,
    session_id: str,
    answer: str = "",
    thinking: str = "",
    *,
    outcome: Outcome | str = Outcome.COMPLETE,
    usage: dict[str, Any] | None = None,
    timings: dict[str, Any] | None = None,
    thinking_enabled: bool | None = None,
    budget: int | None = None,
    sampling: dict[str, Any] | None = None,
) -> int:
    """A whole reply, as the saver leaves it when the reply ends; returns its message id."""
    message_id = store.begin_reply(
        session_id,
        thinking_enabled=bool(thinking) if thinking_enabled is None else thinking_enabled,
        budget=budget,
        sampling=sampling or {},
    )
    store.finish_reply(
        message_id,
        thinking=thinking,
        answer=answer,
        outcome=Outcome(outcome),
        usage=usage,
        timings=timings,
    )
    return message_id
