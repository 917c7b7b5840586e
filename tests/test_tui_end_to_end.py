"""The chat app on the real engine (the tiny random-weights checkpoint): gibberish, but real.

Everything between the keypress and the saved turn is the production path: engine loading in
a worker, tokenizer and chat template, generation, the stream bridge and the store.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
from tui_helpers import chat, finish_turn, ready, send, wait_until

from qwen3tui.settings import TurnSettings, UserSettings
from qwen3tui.store import Outcome, SessionStore
from qwen3tui.tui import engine_factory_for
from qwen3tui.tui.app import Qwen3App
from qwen3tui.tui.widgets.thinking_pane import ThinkingPane

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def real_app(checkpoint: Path, home: Path, **settings: Any) -> Qwen3App:
    args = argparse.Namespace(
        model=str(checkpoint), device="cpu", dtype="float32", context=1024, quantize=None
    )
    return Qwen3App(
        engine_factory=engine_factory_for(args),
        model_name=str(checkpoint),
        store=SessionStore.open(home / "sessions.db"),
        settings=UserSettings(turn=TurnSettings(**settings)),
    )


async def test_thinking_then_plain_turns_on_the_real_engine(
    tiny_checkpoint: Path, qwen3tui_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    titles: list[str] = []  # the pane's title after every streamed batch
    original_append = ThinkingPane.append

    async def recording_append(pane: ThinkingPane, text: str, tokens: int) -> None:
        await original_append(pane, text, tokens)
        titles.append(str(pane.title))

    monkeypatch.setattr(ThinkingPane, "append", recording_append)
    app = real_app(
        tiny_checkpoint,
        qwen3tui_home,
        thinking=True,
        thinking_budget=128,
        max_tokens=160,
    )
    async with app.run_test(size=(100, 36)) as pilot:
        c = await ready(pilot)
        assert app.engine.info.device == "cpu"
        assert "cpu · float32" in str(c.status.render())
        await send(pilot, "Hello there")
        reply = c.replies()[-1]
        await finish_turn(pilot)
        assert len(titles) > 1 and all(t.startswith("Thinking… ") for t in titles)
        counts = [int(t.split()[1]) for t in titles]
        assert counts == sorted(counts) and all(t.endswith(" / 128") for t in titles)
        # Random weights never close </think> on their own: the budget does.
        assert reply.pane.title.startswith("Thought for ")
        assert reply.pane.title.endswith("128 tokens · budget reached")
        assert reply.pane.collapsed is True
        assert reply.thinking_text
        stored = app.store.get_session(c.session_id).messages
        assert [m.role for m in stored] == ["user", "assistant"]
        assert stored[1].thinking.strip() == reply.thinking_text.strip()
        assert stored[1].content == reply.answer_text
        # Cut off by max tokens: saved and shown with the one label of that outcome.
        assert stored[1].status == "length" and reply.outcome is Outcome.LENGTH
        assert str(reply.meta.render()).startswith("cut off (max tokens)")
        assert "tok/s" in str(c.status.render())

        await send(pilot, "/no_think")
        await send(pilot, "Again, briefly")
        await finish_turn(pilot)
        plain = c.replies()[-1]
        assert plain.pane is None and plain.answer_text
        stored = app.store.get_session(c.session_id).messages
        assert stored[-1].thinking_enabled is False and stored[-1].content == plain.answer_text


async def test_escape_stops_the_real_engine_and_keeps_the_partial_reply(
    tiny_checkpoint: Path, qwen3tui_home: Path
) -> None:
    app = real_app(
        tiny_checkpoint,
        qwen3tui_home,
        thinking=False,
        thinking_budget=None,
        max_tokens=4000,
    )
    async with app.run_test(size=(100, 36)) as pilot:
        c = await ready(pilot)
        await send(pilot, "Write a very long story")
        await wait_until(pilot, lambda: c.replies()[-1].answer_text, what="answer text", timeout=60)
        await pilot.press("escape")
        await finish_turn(pilot)
        reply = chat(app).replies()[-1]
        assert reply.outcome is Outcome.CANCELLED
        saved = app.store.get_session(c.session_id).messages[-1]
        assert saved.status == "cancelled"
        assert saved.content and saved.content == reply.answer_text
