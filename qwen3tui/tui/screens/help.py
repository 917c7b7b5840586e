"""Help: the slash commands (given by the caller) and the key bindings of the screen below."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Label


def describe_bindings(screen: Screen, app: App) -> list[tuple[str, str]]:
    """(key, what it does) for the bindings a user has on `screen` right now.

    Shown bindings from any widget in the focus chain, plus every described binding of the
    screen and the app (hidden ones too: those are often the useful shortcuts). The many
    editing keys of a focused text widget are left out unless they are shown in the footer.
    """
    keys_for: dict[str, list[str]] = {}  # description -> keys, in binding order
    for active in screen.active_bindings.values():
        binding = active.binding
        description = binding.description or binding.tooltip
        if not description:
            continue
        if not (binding.show or isinstance(active.node, App | Screen)):
            continue
        key = app.get_key_display(binding)
        keys = keys_for.setdefault(description, [])
        if key not in keys:
            keys.append(key)
    # One row per action: "^c / super+c  Copy selected text".
    return [(" / ".join(keys), description) for description, keys in keys_for.items()]


class HelpScreen(ModalScreen[None]):
    """Lists slash commands and key bindings; Esc, q or F1 closes it."""

    CSS_PATH = Path(__file__).with_name("help.tcss")

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,f1", "close", "Close"),
    ]

    def __init__(
        self,
        commands: Iterable[tuple[str, str]],
        *,
        keys: Iterable[tuple[str, str]] | None = None,
        name: str | None = None,
        id: str | None = None,
    ) -> None:
        """`keys` adds rows for keys that are not bindings (e.g. Enter in the composer)."""
        super().__init__(name=name, id=id)
        self.commands = list(commands)
        self.extra_keys = list(keys or [])
        self.key_rows: list[tuple[str, str]] = []

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-dialog"):
            yield Label("Slash commands", classes="help-heading")
            yield DataTable(id="help-commands", show_header=False, cursor_type="none")
            yield Label("Keys", classes="help-heading")
            yield DataTable(id="help-keys", show_header=False, cursor_type="none")
            yield Label("Esc closes this help", id="help-hint")

    def on_mount(self) -> None:
        below = self._screen_below()
        self.key_rows = [*self.extra_keys]
        if below is not None:
            known = set(self.key_rows)
            self.key_rows += [row for row in describe_bindings(below, self.app) if row not in known]
        commands = self.query_one("#help-commands", DataTable)
        commands.add_columns("command", "description")
        commands.add_rows([(Text(name), Text(text)) for name, text in self.commands])
        keys = self.query_one("#help-keys", DataTable)
        keys.add_columns("key", "action")
        keys.add_rows([(Text(key), Text(text)) for key, text in self.key_rows])
        self.query_one("#help-dialog").focus()

    def _screen_below(self) -> Screen | None:
        stack = self.app.screen_stack
        if self in stack:
            index = stack.index(self)
            return stack[index - 1] if index > 0 else None
        return stack[-1] if stack else None

    def action_close(self) -> None:
        self.dismiss(None)
