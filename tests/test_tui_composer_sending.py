"""Sending from the composer when the screen is slow to take a message: on a busy machine the
next keys, Enter included, can come before the screen handles the first Enter's `Submitted`.
Each Enter must send only what was typed since the last one."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult

from qwen3tui.tui.widgets.composer import Composer

pytestmark = pytest.mark.anyio


class SlowScreenApp(App[None]):
    """Holds every sent text until `take_all`, as a busy screen would."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[str] = []

    def compose(self) -> ComposeResult:
        yield Composer(id="composer")

    def on_composer_submitted(self, event: Composer.Submitted) -> None:
        self.held.append(event.text)

    def take_all(self, refused: tuple[str, ...] = ()) -> None:
        composer = self.query_one(Composer)
        for text in self.held:
            if text not in refused:
                composer.clear_sent(text)
            composer.taken(text)
        self.held = []


async def test_a_second_enter_before_the_first_is_taken_sends_only_the_new_text() -> None:
    app = SlowScreenApp()
    async with app.run_test() as pilot:
        composer = app.query_one(Composer)
        composer.focus()
        await pilot.press(*"/budget off", "enter")
        await pilot.press(*"think on", "enter")
        assert app.held == ["/budget off", "think on"]  # not "/budget offthink on"
        app.take_all()
        assert composer.text == ""
        await pilot.press(*"again", "enter")
        assert app.held == ["again"]  # nothing is held back once taken


async def test_a_refused_text_stays_and_what_followed_it_is_still_sent_alone() -> None:
    app = SlowScreenApp()
    async with app.run_test() as pilot:
        composer = app.query_one(Composer)
        composer.focus()
        await pilot.press(*"/budget of", "enter")
        await pilot.press(*"hello", "enter")
        assert app.held == ["/budget of", "hello"]
        app.take_all(refused=("/budget of",))  # the screen said what is wrong with it
        assert composer.text == "/budget of"  # kept, to be fixed
