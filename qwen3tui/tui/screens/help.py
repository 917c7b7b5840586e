"""Help: the slash commands (given by the caller) and the key bindings of the screen below."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Label, Static


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
        below = self._screen_below()
        self.key_rows = [*self.extra_keys]
        if below is not None:
            known = set(self.key_rows)
            self.key_rows += [row for row in describe_bindings(below, self.app) if row not in known]
        with VerticalScroll(id="help-dialog"):
            yield Label("Slash commands", classes="help-heading")
            yield _table("help-commands", self.commands)
            yield Label("Keys", classes="help-heading")
            yield _table("help-keys", self.key_rows)
            yield Label("Esc closes this help", id="help-hint")

    def on_mount(self) -> None:
        self.query_one("#help-dialog").focus()  # so arrows and PageUp/PageDown scroll it

    def _screen_below(self) -> Screen | None:
        stack = self.app.screen_stack
        if self in stack:
            index = stack.index(self)
            return stack[index - 1] if index > 0 else None
        return stack[-1] if stack else None

    def action_close(self) -> None:
        self.dismiss(None)


def _table(table_id: str, rows: list[tuple[str, str]]) -> Grid:
    """Two columns of plain text; long descriptions wrap instead of being cut off."""
    cells = [
        Static(text, classes=f"help-{kind}", markup=False)
        for row in rows
        for kind, text in zip(("name", "text"), row, strict=True)
    ]
    return Grid(*cells, id=table_id, classes="help-table")
