"""Screenshots of the chat app (pytest-textual-snapshot): compare with `tests/__snapshots__/`.

Each view at 120x40, 80x24 and 60x20, in a dark and a light theme: the welcome view of an empty
chat, a reply mid-thinking (the thinking pane live) and mid-answer (the answer streaming), the
sessions screen and the help. The fake engine reports fixed timings, the live speed's clock
stands still, store rows are imported with fixed dates in UTC and cursors do not blink, so
every run draws the same screen. Update after an intended change with `--snapshot-update`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_engine import FakeEngine
from textual.widgets import Footer
from tui_helpers import finish_turn, make_app, ready, send, wait_for_thread, wait_until

from qwen3tui.settings import TurnSettings, UserSettings
from qwen3tui.store import SessionStore
from qwen3tui.store.export import EXPORT_FORMAT, EXPORT_VERSION
from qwen3tui.tui import live_stats
from qwen3tui.tui.generation_worker import UpdatePacer
from qwen3tui.tui.screens.help import HelpScreen
from qwen3tui.tui.screens.sessions import SessionsScreen

SIZES = [(120, 40), (80, 24), (60, 20)]
THEMES = ["qwen-dark", "qwen-light"]

FIRST_ANSWER = [
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


@pytest.fixture(autouse=True)
def steady_clocks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Dates on screen are local time: pin it. The live tok/s reads a clock that stands still
    (so it never shows: it would depend on how fast this machine is)."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr(live_stats, "monotonic", lambda: 0.0)
    # The fake engine says "cpu": its updates would be paced to spare the decode's cores, which
    # only makes these pictures slower to reach.
    monkeypatch.setattr(UpdatePacer, "pace_for", lambda self, info: None)
    yield
    monkeypatch.undo()
    time.tzset()


def steady_cursors(pilot: Any) -> None:
    """Stop cursors blinking (shown, if focused): a blink every 0.5 s made the picture depend
    on how long the steps before it took."""
    for widget in pilot.app.screen.query("*"):
        if hasattr(widget, "cursor_blink"):
            widget.cursor_blink = False


async def settled(pilot: Any) -> None:
    """Wait until the footer has left out the keys that do not fit, then draw."""
    footers = pilot.app.screen.query(Footer)
    if footers:
        footer = footers.first()
        width = footer.scrollable_content_region.width
        await wait_until(
            pilot,
            lambda: all(
                k.virtual_region_with_margin.right <= width
                for k in footer.query("FooterKey")
                if k.display
            ),
            what="the footer to fit",
        )
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()
    steady_cursors(pilot)


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


def _store(home: Path) -> SessionStore:
    store = SessionStore.open(home / "sessions.db")
    for title, day, question in [
        ("Rust lifetimes", 3, "what is 'a?"),
        ("Sourdough schedule", 5, "when do I feed it?"),
        ("Trip to Lisbon", 9, "three days, what to see?"),
    ]:
        store.import_json(_fixed_session(title, day, question))
    return store


async def _welcome(pilot: Any, engine: FakeEngine) -> None:
    await ready(pilot)


async def _mid_reply(pilot: Any, engine: FakeEngine, tokens: int) -> None:
    """A finished turn, then a second reply held after `tokens` tokens."""
    c = await ready(pilot)
    await send(pilot, "Why is the sky blue?")
    await finish_turn(pilot)
    engine.hold_after = tokens
    await send(pilot, "And sunsets red?")
    await wait_for_thread(engine.holding)
    reply = c.replies()[-1]
    shown = min(tokens, len(engine.thinking_tokens))
    await wait_until(pilot, lambda: reply.pane.tokens == shown, what="the thinking so far")
    if tokens > shown:
        answer = "".join(engine.answer_tokens[: tokens - shown])
        await wait_until(pilot, lambda: reply.answer_text == answer, what="the answer so far")


async def _mid_thinking(pilot: Any, engine: FakeEngine) -> None:
    await _mid_reply(pilot, engine, 4)


async def _mid_answer(pilot: Any, engine: FakeEngine) -> None:
    await _mid_reply(pilot, engine, len(engine.thinking_tokens) + 3)


async def _sessions(pilot: Any, engine: FakeEngine) -> None:
    await ready(pilot)
    await pilot.press("ctrl+o")
    await wait_until(
        pilot, lambda: isinstance(pilot.app.screen, SessionsScreen), what="the sessions screen"
    )


async def _help(pilot: Any, engine: FakeEngine) -> None:
    await ready(pilot)
    await pilot.press("f1")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, HelpScreen), what="help")


VIEWS: dict[str, Callable[[Any, FakeEngine], Awaitable[None]]] = {
    "welcome": _welcome,
    "mid_thinking": _mid_thinking,
    "mid_answer": _mid_answer,
    "sessions": _sessions,
    "help": _help,
}


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("view", list(VIEWS))
def test_view(
    snap_compare: Any, qwen3tui_home: Path, view: str, theme: str, size: tuple[int, int]
) -> None:
    engine = FakeEngine(answer_tokens=list(FIRST_ANSWER))
    settings = UserSettings(theme=theme, turn=TurnSettings(thinking=True, thinking_budget=1024))
    app = make_app(engine, qwen3tui_home, store=_store(qwen3tui_home), settings=settings)

    async def run_before(pilot: Any) -> None:
        await VIEWS[view](pilot, engine)
        await settled(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
