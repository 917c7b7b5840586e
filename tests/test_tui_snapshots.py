"""Screenshots of the chat app (pytest-textual-snapshot): compare with `tests/__snapshots__/`.

The fake engine reports fixed timings and the store rows are imported with fixed dates, so
every run draws the same screen. Update after an intended change with `--snapshot-update`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fake_engine import FakeEngine
from tui_helpers import chat, finish_turn, make_app, ready, send, wait_for_thread, wait_until

from qwen3tui.settings import TurnSettings, UserSettings
from qwen3tui.store import SessionStore
from qwen3tui.store.export import EXPORT_FORMAT, EXPORT_VERSION
from qwen3tui.tui.screens.help import HelpScreen
from qwen3tui.tui.screens.sessions import SessionsScreen

SIZE = (100, 32)
SETTINGS = dict(theme="qwen-dark", turn=TurnSettings(thinking=True, thinking_budget=1024))


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dates on screen are local time: pin it."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def steady_cursors(pilot: Any) -> None:
    """Stop cursors blinking (shown, if focused): a blink every 0.5 s made the picture depend
    on how long the steps before it took."""
    for widget in pilot.app.screen.query("*"):
        if hasattr(widget, "cursor_blink"):
            widget.cursor_blink = False


def test_main_screen_mid_thinking(snap_compare: Any, qwen3tui_home: Path) -> None:
    engine = FakeEngine(hold_after=4)  # held until the app exits (which cancels it)
    app = make_app(engine, qwen3tui_home, settings=UserSettings(**SETTINGS))

    async def run_before(pilot: Any) -> None:
        c = await ready(pilot)
        await send(pilot, "Why is the sky blue?")
        await wait_for_thread(engine.holding)
        await wait_until(pilot, lambda: c.replies()[-1].pane.tokens == 4, what="4 tokens")
        await pilot.pause(0.1)
        steady_cursors(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_main_screen_after_a_finished_reply(snap_compare: Any, qwen3tui_home: Path) -> None:
    engine = FakeEngine(
        answer_tokens=[
            "Rayleigh",
            " scattering:",
            " **blue**",
            " light",
            " scatters",
            " more.\n\n",
            "- short",
            " waves\n",
            "- long",
            " waves\n",
        ]
    )
    app = make_app(engine, qwen3tui_home, settings=UserSettings(**SETTINGS))

    async def run_before(pilot: Any) -> None:
        await ready(pilot)
        await send(pilot, "Why is the sky blue?")
        await finish_turn(pilot)
        await pilot.pause(0.1)
        steady_cursors(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def _fixed_session(title: str, day: int, question: str) -> dict[str, Any]:
    stamp = f"2026-03-{day:02d}T09:30:00+00:00"
    message = {"role": "user", "content": question, "created": stamp, "updated": stamp}
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "session": {
            "title": title,
            "created": stamp,
            "updated": stamp,
            "model": "fake",
            "system_prompt": None,
            "settings": {},
            "messages": [message],
        },
    }


def test_sessions_screen(snap_compare: Any, qwen3tui_home: Path, utc: None) -> None:
    store = SessionStore.open(qwen3tui_home / "sessions.db")
    for title, day, question in [
        ("Rust lifetimes", 3, "what is 'a?"),
        ("Sourdough schedule", 5, "when do I feed it?"),
        ("Trip to Lisbon", 9, "three days, what to see?"),
    ]:
        store.import_json(_fixed_session(title, day, question))
    app = make_app(FakeEngine(), qwen3tui_home, store=store, settings=UserSettings(**SETTINGS))

    async def run_before(pilot: Any) -> None:
        await ready(pilot)
        await pilot.press("ctrl+o")
        await wait_until(
            pilot, lambda: isinstance(pilot.app.screen, SessionsScreen), what="the sessions screen"
        )
        await pilot.pause(0.1)
        steady_cursors(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_help_screen(snap_compare: Any, qwen3tui_home: Path) -> None:
    app = make_app(FakeEngine(), qwen3tui_home, settings=UserSettings(**SETTINGS))

    async def run_before(pilot: Any) -> None:
        await ready(pilot)
        await pilot.press("f1")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, HelpScreen), what="help")
        await pilot.pause(0.1)
        steady_cursors(pilot)
        assert chat(pilot.app).composer is not None

    assert snap_compare(app, terminal_size=(100, 44), run_before=run_before)
