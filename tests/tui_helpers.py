"""Shared helpers for the TUI's Pilot tests: build the app around a fake engine and a real store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from qwen3tui.settings import UserSettings
from qwen3tui.store import SessionStore
from qwen3tui.tui.app import Qwen3App
from qwen3tui.tui.chat_screen import ChatScreen


def make_app(
    engine: Any,
    home: Path,
    *,
    store: SessionStore | None = None,
    settings: UserSettings | None = None,
    engine_factory: Callable[..., Any] | None = None,
    **kwargs: Any,
) -> Qwen3App:
    return Qwen3App(
        engine_factory=engine_factory or (lambda progress: engine),
        model_name="fake/Qwen3-Fake",
        store=store or SessionStore.open(home / "sessions.db"),
        settings=settings or UserSettings(),
        **kwargs,
    )


async def wait_until(
    pilot: Pilot[Any],
    condition: Callable[[], object],
    timeout: float = 10.0,
    what: str = "condition",
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


async def wait_for_thread(event: Any, timeout: float = 10.0) -> None:
    """Wait for a threading.Event without blocking the app's event loop."""
    deadline = time.monotonic() + timeout
    while not event.is_set():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the engine")
        await asyncio.sleep(0.01)


def chat(app: Qwen3App) -> ChatScreen:
    assert app.chat is not None
    return app.chat


async def ready(pilot: Pilot[Any]) -> ChatScreen:
    """Wait until the (fake) engine is loaded."""
    app: Qwen3App = pilot.app  # type: ignore[assignment]
    await wait_until(
        pilot, lambda: app.engine is not None and app.chat is not None, what="the engine to load"
    )
    await pilot.pause()
    return chat(app)


async def send(pilot: Pilot[Any], text: str) -> None:
    """Type `text` into the composer and press Enter."""
    c = chat(pilot.app)  # type: ignore[arg-type]
    c.composer.focus()
    c.composer.text = text
    await pilot.press("enter")
    await pilot.pause()


async def finish_turn(pilot: Pilot[Any]) -> None:
    c = chat(pilot.app)  # type: ignore[arg-type]
    await wait_until(
        pilot, lambda: c.turn is None and c.saver.idle(), what="the reply to finish and be saved"
    )
    await pilot.pause()
