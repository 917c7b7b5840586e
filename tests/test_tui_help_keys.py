"""The help (F1) lists every key: each described key binding of the app, its screens and
widgets (read from the bindings themselves), and the keys the composer reads itself."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path
from typing import Any

import pytest
from fake_engine import FakeEngine
from textual.binding import Binding
from tui_helpers import make_app, ready, wait_until

import qwen3tui.tui
from qwen3tui.tui.screens import sessions
from qwen3tui.tui.screens.help import HelpScreen, key_label
from qwen3tui.tui.widgets import slash_suggestions

pytestmark = pytest.mark.anyio

# Dialogs say their own keys on screen ("Enter saves · Esc cancels"); the help's are its own.
DIALOGS = {"HelpScreen", "ConfirmScreen", "TextPromptScreen"}


def classes_with_bindings() -> list[type]:
    found = []
    for module_info in pkgutil.walk_packages(qwen3tui.tui.__path__, "qwen3tui.tui."):
        module = importlib.import_module(module_info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and "BINDINGS" in vars(cls):
                found.append(cls)
    return [cls for cls in found if cls.__name__ not in DIALOGS]


def described_bindings() -> list[tuple[str, Binding]]:
    return [
        (cls.__name__, binding)
        for cls in classes_with_bindings()
        for binding in Binding.make_bindings(vars(cls)["BINDINGS"])
        if binding.description
    ]


async def open_help(pilot: Any) -> HelpScreen:
    await ready(pilot)
    await pilot.press("f1")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, HelpScreen), what="help")
    return pilot.app.screen


def test_the_chat_the_app_the_slider_and_the_sessions_screen_have_described_keys() -> None:
    """The check below is about these (and any widget that gets bindings later)."""
    owners = {owner for owner, _ in described_bindings()}
    assert {"ChatScreen", "Qwen3App", "BudgetSlider", "SessionsScreen"} <= owners


async def test_every_described_key_binding_is_in_the_help(qwen3tui_home: Path) -> None:
    app = make_app(FakeEngine(), qwen3tui_home)
    async with app.run_test(size=(120, 40)) as pilot:
        help_screen = await open_help(pilot)
        rows = help_screen.all_key_rows
        missing = [
            f"{owner}: {binding.key} {binding.description!r}"
            for owner, binding in described_bindings()
            if not any(
                key_label(binding.key) in keys.split(" / ") and text.startswith(binding.description)
                for keys, text in rows
            )
        ]
        assert not missing, f"keys not in the help: {missing}"


async def test_the_help_lists_the_keys_the_composer_reads_itself(qwen3tui_home: Path) -> None:
    app = make_app(FakeEngine(), qwen3tui_home)
    async with app.run_test(size=(120, 40)) as pilot:
        help_screen = await open_help(pilot)
        keys = {key for keys, _ in help_screen.all_key_rows for key in keys.split(" / ")}
        assert {"Enter", "Shift+Enter", "Ctrl+J", "Up", "Down", "Tab", "Ctrl+P"} <= keys


async def test_the_help_lists_the_keys_other_widgets_read_themselves(
    qwen3tui_home: Path,
) -> None:
    """The slash suggestions' keys and typing to search in the sessions list (not bindings)."""
    app = make_app(FakeEngine(), qwen3tui_home)
    async with app.run_test(size=(120, 40)) as pilot:
        help_screen = await open_help(pilot)
        for row in [*slash_suggestions.KEY_ROWS, *sessions.KEY_ROWS]:
            assert row in help_screen.all_key_rows


async def test_the_help_shows_the_keys_first_and_the_slash_commands_after(
    qwen3tui_home: Path,
) -> None:
    app = make_app(FakeEngine(), qwen3tui_home)
    async with app.run_test(size=(120, 40)) as pilot:
        help_screen = await open_help(pilot)
        headings = [str(label.render()) for label in help_screen.query(".help-heading")]
        assert headings[0] == "Keys" and headings[-1] == "Slash commands"
        assert "Thinking budget slider (Tab to it)" in headings


@pytest.mark.parametrize(
    ("key", "label"),
    [
        ("ctrl+t", "Ctrl+T"),
        ("escape", "Esc"),
        ("f1", "F1"),
        ("shift+enter", "Shift+Enter"),
        ("pageup", "PageUp"),
        ("equals_sign", "="),
        ("minus", "-"),
        ("delete", "Delete"),
        ("alt+left", "Alt+Left"),
    ],
)
def test_keys_are_named_as_people_write_them(key: str, label: str) -> None:
    assert key_label(key) == label
