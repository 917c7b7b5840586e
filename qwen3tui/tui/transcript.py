"""The conversation between its two forms: saved messages shown as widgets (a reopened session),
and the widgets on screen as a session (for /export while nothing can be saved)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from qwen3tui.store import Outcome
from qwen3tui.store.models import Message, Session

from .widgets.chat_message import (
    AssistantMessage,
    UserMessage,
    reply_meta,
    restored_thought_title,
)
from .widgets.thinking_pane import ThinkingDisplay


def message_widget(m: Message, display: ThinkingDisplay) -> UserMessage | AssistantMessage:
    """A saved message as its widget, with its `‹ 2/3 ›` when it has alternatives."""
    widget = (
        UserMessage(m.content, m.attachments) if m.role == "user" else restored_reply(m, display)
    )
    widget.set_branch(m.sibling_position, m.sibling_count)
    return widget


def restored_reply(m: Message, display: ThinkingDisplay) -> AssistantMessage:
    """A saved reply as its widget: the pane titled from what was saved, the outcome shown."""
    usage, timings = m.usage or {}, m.timings or {}
    title = restored_thought_title(
        m.thinking,
        usage.get("thinking_tokens"),
        timings.get("thinking_s"),
        bool(usage.get("thinking_budget_hit")),
        bool(usage.get("thinking_cut_by_user")),
    )
    widget = AssistantMessage(
        thinking_enabled=bool(m.thinking_enabled) or bool(m.thinking),
        budget=m.budget,
        answer=m.content,
        thinking=m.thinking,
        live=False,
        thought=title,
        display=display,
    )
    meta = reply_meta(
        m.outcome,
        answer_tokens=usage.get("answer_tokens", 0),
        decode_tok_s=timings.get("decode_tok_s", 0.0),
        ttft_s=timings.get("ttft_s", 0.0),
        error=m.error,
    )
    widget.show_outcome(m.outcome, meta)
    return widget


def session_from_widgets(
    widgets: list[Any],
    *,
    session_id: str,
    title: str,
    model: str,
    system_prompt: str | None,
    settings: dict[str, Any],
) -> Session:
    """What is on screen as a session: the user's messages with their files, each reply's text
    and how it ended (a reply still streaming counts as interrupted). One branch: each message
    follows the one before it."""
    messages: list[Message] = []
    for widget in widgets:
        order = len(messages)
        if isinstance(widget, UserMessage):
            typed = _message(session_id, order, "user", widget.text)
            messages.append(replace(typed, attachments=list(widget.attachments)))
        elif isinstance(widget, AssistantMessage):
            outcome = widget.outcome or Outcome.INTERRUPTED
            messages.append(
                _message(
                    session_id,
                    order,
                    "assistant",
                    widget.answer_text,
                    widget.thinking_text,
                    outcome.value,
                )
            )
    for order, m in enumerate(messages):
        m.id, m.parent_id = order + 1, order or None
    return Session(
        id=session_id,
        title=title,
        created="",
        updated="",
        model=model,
        system_prompt=system_prompt,
        settings=settings,
        messages=messages,
        active_leaf=messages[-1].id if messages else None,
    )


def _message(
    session_id: str,
    order: int,
    role: str,
    content: str,
    thinking: str = "",
    status: str = "complete",
) -> Message:
    return Message(
        id=0,
        session_id=session_id,
        order=order,
        role=role,
        content=content,
        thinking=thinking,
        status=status,
        thinking_enabled=None if role == "user" else bool(thinking),
        budget=None,
        sampling={},
        usage={},
        timings={},
        created="",
        updated="",
    )
