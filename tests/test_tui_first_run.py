"""A first run without a model: the window says what went wrong, how to fix it, and that the
saved sessions are still there (and they can be opened), with commands set in bold rather
than in literal backticks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.text import Text
from tui_helpers import chat, make_app, wait_until

from qwen3tui.engine.errors import ModelNotFoundError
from qwen3tui.store import SessionStore
from qwen3tui.store.export import EXPORT_FORMAT, EXPORT_VERSION
from qwen3tui.tui.screens.sessions import SessionsScreen
from qwen3tui.tui.widgets.chat_message import Notice, UserMessage
from qwen3tui.tui.widgets.command_text import command_text

pytestmark = pytest.mark.anyio


def gated(progress: object) -> None:
    raise ModelNotFoundError(
        "Qwen/Qwen3-8B is gated on the Hugging Face Hub.",
        "Accept its terms on huggingface.co and run `hf auth login`.",
    )


def shown_notices(app: Any) -> list[Text]:
    return [n.render() for n in chat(app).conversation.query(Notice)]


def bold_spans(text: Text) -> list[str]:
    return [text.plain[s.start : s.end] for s in text.spans if "bold" in str(s.style)]


async def test_without_a_model_the_window_says_the_saved_sessions_are_still_there(
    qwen3tui_home: Path,
) -> None:
    app = make_app(None, qwen3tui_home, engine_factory=gated)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: chat(app).load_error is not None, what="the load error")
        await pilot.pause()
        error, advice = shown_notices(app)[:2]
        assert error.plain == (
            "Could not load the model: Qwen/Qwen3-8B is gated on the Hugging Face Hub. Accept"
            " its terms on huggingface.co and run hf auth login."
        )
        assert bold_spans(error) == ["hf auth login"]
        assert "saved sessions are still here" in advice.plain
        assert "Ctrl+O opens them" in advice.plain
        assert bold_spans(advice) == ["qwen3tui --model DIR_OR_HUB_ID", "qwen3tui sessions list"]
        assert "`" not in advice.plain and "/sessions" not in advice.plain  # no path look-alike


async def test_without_a_model_a_saved_session_can_still_be_opened(qwen3tui_home: Path) -> None:
    store = SessionStore.open(qwen3tui_home / "sessions.db")
    stamp = "2026-03-03T09:30:00+00:00"
    message = {"role": "user", "content": "kept from last time", "created": stamp, "updated": stamp}
    session = {"title": "Kept", "created": stamp, "updated": stamp, "model": "fake"}
    session |= {"system_prompt": None, "settings": {}, "messages": [message]}
    session_id = store.import_json(
        {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "session": session}
    )
    app = make_app(None, qwen3tui_home, store=store, engine_factory=gated)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: chat(app).load_error is not None, what="the load error")
        await pilot.press("ctrl+o")
        await wait_until(pilot, lambda: isinstance(app.screen, SessionsScreen), what="sessions")
        await pilot.press("enter")
        await wait_until(pilot, lambda: chat(app).session_id == session_id, what="the session")
        texts = [m.text for m in chat(app).conversation.query(UserMessage)]
        assert texts == ["kept from last time"]


def test_command_text_sets_code_spans_in_bold_without_backticks() -> None:
    text = command_text("run `qwen3tui sessions list` or `hf auth login`.")
    assert text.plain == "run qwen3tui sessions list or hf auth login."
    assert bold_spans(text) == ["qwen3tui sessions list", "hf auth login"]


def test_an_unpaired_backtick_is_left_as_written() -> None:
    assert command_text("it's a `typo").plain == "it's a `typo"
