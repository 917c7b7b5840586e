"""Fit a conversation into the context window by dropping its oldest turns."""

from __future__ import annotations

from collections.abc import Callable

from .errors import ContextOverflowError

Message = dict[str, str]


def fit_messages(
    messages: list[Message],
    count: Callable[[list[Message]], int],
    limit: int,
) -> tuple[list[Message], int]:
    """Drop the oldest turns until `count(messages) <= limit`.

    The system prompt and the newest message are never dropped; a turn goes whole (a user
    message with the replies after it) so the conversation still starts with the user.
    Returns the kept messages and how many were dropped.
    """
    system = [m for m in messages[:1] if m.get("role") == "system"]
    history = messages[len(system) : -1]
    newest = messages[-1:]
    dropped = 0
    while True:
        kept = system + history + newest
        size = count(kept)
        if size <= limit:
            return kept, dropped
        if not history:
            raise ContextOverflowError(
                f"the prompt needs {size} tokens but only {limit} fit in the context.",
                "Shorten the message or system prompt, or raise --context.",
            )
        cut = 1
        while cut < len(history) and history[cut].get("role") != "user":
            cut += 1
        history = history[cut:]
        dropped += cut
