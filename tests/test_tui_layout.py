"""The chat area is the priority at every terminal size: the chrome around it (status line,
composer, controls, footer) takes 6 rows, and nothing in it is cut off mid-word."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fake_engine import FakeEngine
from rich.cells import cell_len
from textual.widgets import Footer
from tui_helpers import make_app, ready, send, wait_for_thread, wait_until

from qwen3tui.settings import TurnSettings, UserSettings

pytestmark = pytest.mark.anyio

SETTINGS = UserSettings(turn=TurnSettings(thinking=True, thinking_budget=1024))

# The transcript's rows mid-reply: the terminal's height less 6 rows of chrome.
SIZES = [((120, 40), 34), ((80, 24), 18), ((60, 20), 14)]


async def mid_reply(pilot: Any, engine: FakeEngine) -> Any:
    c = await ready(pilot)
    await send(pilot, "Why is the sky blue?")
    await wait_for_thread(engine.holding)
    await wait_until(pilot, lambda: c.replies()[-1].pane.tokens == 4, what="4 tokens shown")
    await wait_until(pilot, lambda: "ctx 13" in str(c.status.render()), what="the live status")
    return c


def shown_keys(footer: Footer) -> list[Any]:
    return [key for key in footer.query("FooterKey") if key.display]


@pytest.mark.parametrize(("size", "rows"), SIZES, ids=[f"{w}x{h}" for (w, h), _ in SIZES])
async def test_the_transcript_keeps_the_rows_mid_reply(
    qwen3tui_home: Path, size: tuple[int, int], rows: int
) -> None:
    engine = FakeEngine(hold_after=4)
    app = make_app(engine, qwen3tui_home, settings=SETTINGS)
    async with app.run_test(size=size) as pilot:
        c = await mid_reply(pilot, engine)
        assert c.conversation.region.height >= rows
        assert (c.status.region.height, c.controls.region.height) == (1, 1)
        assert c.composer.region.height == 3  # one line of text in its border
        engine.release.set()


@pytest.mark.parametrize("size", [s for s, _ in SIZES], ids=lambda s: f"{s[0]}x{s[1]}")
async def test_the_status_line_fits_its_width(qwen3tui_home: Path, size: tuple[int, int]) -> None:
    engine = FakeEngine(hold_after=4)
    app = make_app(engine, qwen3tui_home, settings=SETTINGS)
    async with app.run_test(size=size) as pilot:
        c = await ready(pilot)
        idle = str(c.status.render())
        assert cell_len(idle) <= c.status.content_size.width
        await mid_reply(pilot, engine)
        line = str(c.status.render())
        assert cell_len(line) <= c.status.content_size.width
        assert "…" not in line.replace("thinking…", "")  # parts left out, none cut
        assert line.startswith("Qwen3-Fake") and "ctx 13" in line and line.endswith("thinking…")
        engine.release.set()


async def test_at_80_columns_the_footer_shows_every_key_while_thinking(
    qwen3tui_home: Path,
) -> None:
    engine = FakeEngine(hold_after=4)
    app = make_app(engine, qwen3tui_home, settings=SETTINGS)
    async with app.run_test(size=(80, 24)) as pilot:
        await mid_reply(pilot, engine)
        footer = app.screen.query_one(Footer)
        await wait_until(pilot, lambda: "Answer now" in descriptions(footer), what="Answer now")
        assert descriptions(footer) == [
            "Stop",
            "Answer now",
            "Thinking",
            "Sessions",
            "New",
            "Help",
            "Quit",
        ]
        width = footer.scrollable_content_region.width
        assert all(key.virtual_region.right <= width for key in shown_keys(footer))
        engine.release.set()


def descriptions(footer: Footer) -> list[str]:
    return [key.description for key in shown_keys(footer) if key.description]


async def test_at_60_columns_the_footer_leaves_out_keys_rather_than_cut_one(
    qwen3tui_home: Path,
) -> None:
    engine = FakeEngine(hold_after=4)
    app = make_app(engine, qwen3tui_home, settings=SETTINGS)
    async with app.run_test(size=(60, 20)) as pilot:
        await mid_reply(pilot, engine)
        footer = app.screen.query_one(Footer)
        await wait_until(pilot, lambda: "Answer now" in descriptions(footer), what="Answer now")
        width = footer.scrollable_content_region.width
        await wait_until(
            pilot,
            lambda: all(key.virtual_region.right <= width for key in shown_keys(footer)),
            what="only whole keys",
        )
        assert descriptions(footer)[:2] == ["Stop", "Answer now"]  # the ones that matter now
        engine.release.set()


async def test_a_long_message_grows_the_composer_but_leaves_the_chat_its_rows(
    qwen3tui_home: Path,
) -> None:
    app = make_app(FakeEngine(), qwen3tui_home, settings=SETTINGS)
    async with app.run_test(size=(60, 20)) as pilot:
        c = await ready(pilot)
        c.composer.text = "two\nlines"
        await pilot.pause()
        assert c.composer.region.height == 4
        c.composer.text = "\n".join(f"line {i}" for i in range(20))
        await pilot.pause()
        assert c.composer.region.height == 5  # at most 3 lines of text at this height
        assert c.conversation.region.height + c.welcome.region.height >= 11


@pytest.mark.parametrize("size", [(80, 24), (60, 20)], ids=["80x24", "60x20"])
async def test_on_a_short_terminal_the_welcome_view_is_compact_and_whole(
    qwen3tui_home: Path, size: tuple[int, int]
) -> None:
    app = make_app(FakeEngine(), qwen3tui_home, settings=SETTINGS)
    async with app.run_test(size=size) as pilot:
        c = await ready(pilot)
        lines = str(c.welcome.render()).count("\n") + 1
        assert c.welcome.region.height == lines  # no border, no blank padding rows, nothing cut
        assert c.conversation.region.height >= 5  # room for the first notices and replies
