"""The help screen (commands and live key bindings) and the yes/no confirmation dialog."""

from __future__ import annotations

from typing import ClassVar

import pytest
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Button, Input, Static

from qwen3tui.tui.screens import ConfirmScreen, HelpScreen

pytestmark = pytest.mark.anyio

COMMANDS = [
    ("/think", "Turn thinking on from the next turn"),
    ("/export md|json [PATH]", "Save this session to a file"),
    ("/quit", "Leave qwen3tui"),
]


class Host(App[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+n", "new_chat", "New chat"),
        Binding("ctrl+s", "sessions", "Sessions", show=False),
        Binding("f9", "internal", ""),  # no description: not for the help
    ]

    def __init__(self) -> None:
        super().__init__()
        self.results: list[object] = []

    def compose(self) -> ComposeResult:
        yield Input(id="composer")

    def on_mount(self) -> None:
        self.query_one(Input).focus()


def rows(app: App, table_id: str) -> list[tuple[str, str]]:
    """The (name, description) pairs shown in one of the help's two-column tables."""
    cells = [str(cell.render()) for cell in app.screen.query_one(table_id).query(Static)]
    return list(zip(cells[0::2], cells[1::2], strict=True))


# --- help ------------------------------------------------------------------------------------


async def test_help_lists_the_commands_it_is_given_literally() -> None:
    app = Host()
    async with app.run_test(size=(120, 40)) as pilot:
        app.push_screen(HelpScreen(COMMANDS))
        await pilot.pause()
        assert rows(app, "#help-commands") == COMMANDS


async def test_help_lists_the_key_bindings_of_the_screen_below() -> None:
    app = Host()
    async with app.run_test(size=(120, 40)) as pilot:
        app.push_screen(HelpScreen(COMMANDS))
        await pilot.pause()
        keys = rows(app, "#help-keys")
        descriptions = [description for _, description in keys]
        assert "New chat" in descriptions  # hidden ones too:
        assert any(d.startswith("Sessions") for d in descriptions)
        assert ("Ctrl+N", "New chat") in keys  # keys named as people write them
        assert "" not in descriptions
        # The help's own "Close" binding is not one of the chat's keys.
        assert "Close" not in descriptions


async def test_help_shows_extra_keys_first() -> None:
    app = Host()
    async with app.run_test(size=(120, 40)) as pilot:
        extra = [("Enter", "Send"), ("Shift+Enter", "New line")]
        app.push_screen(HelpScreen(COMMANDS, keys=extra))
        await pilot.pause()
        assert rows(app, "#help-keys")[:2] == extra


async def test_long_descriptions_wrap_instead_of_being_cut_off() -> None:
    app = Host()
    long_text = "a description long enough to need at least two lines in the help dialog " * 2
    async with app.run_test(size=(80, 40)) as pilot:
        app.push_screen(HelpScreen([("/long", long_text.strip())]))
        await pilot.pause()
        cell = app.screen.query_one("#help-commands").query(Static)[1]
        assert cell.size.height >= 2
        assert str(cell.render()) == long_text.strip()


@pytest.mark.parametrize("key", ["escape", "q", "f1"])
async def test_help_closes_with_escape_q_or_f1(key: str) -> None:
    app = Host()
    async with app.run_test(size=(120, 40)) as pilot:
        app.push_screen(HelpScreen(COMMANDS), app.results.append)
        await pilot.pause()
        await pilot.press(key)
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)
        assert app.results == [None]


# --- confirm ---------------------------------------------------------------------------------


async def ask(pilot_keys: list[str] | None = None, click: str | None = None) -> list[object]:
    app = Host()
    async with app.run_test(size=(100, 30)) as pilot:
        app.push_screen(ConfirmScreen("Delete “[x] notes”?"), app.results.append)
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "[x] notes" in str(app.screen.query_one("#confirm-question").render())
        if pilot_keys:
            await pilot.press(*pilot_keys)
        if click:
            await pilot.click(click)
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        return app.results


async def test_y_means_yes() -> None:
    assert await ask(["y"]) == [True]


async def test_n_means_no() -> None:
    assert await ask(["n"]) == [False]


async def test_escape_means_no() -> None:
    assert await ask(["escape"]) == [False]


async def test_enter_on_the_default_button_means_no() -> None:
    assert await ask(["enter"]) == [False]


async def test_arrow_to_yes_then_enter_means_yes() -> None:
    assert await ask(["left", "enter"]) == [True]


async def test_clicking_the_buttons() -> None:
    assert await ask(click="#confirm-yes") == [True]
    assert await ask(click="#confirm-no") == [False]


async def test_button_labels_can_name_the_action() -> None:
    app = Host()
    async with app.run_test(size=(100, 30)) as pilot:
        app.push_screen(ConfirmScreen("Delete it?", yes_label="Delete"))
        await pilot.pause()
        assert "Delete" in str(app.screen.query_one("#confirm-yes", Button).label)
