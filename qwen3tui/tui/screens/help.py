"""Help: the slash commands (given by the caller) and every key, read from the key bindings
themselves wherever keys are bindings, so the list cannot drift from what the keys do.

What the chat's help lists beyond its own screen and the app (the composer's keys, the slider's,
the sessions screen's) is chosen in `qwen3tui/tui/key_help.py`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, VerticalScroll
from textual.dom import DOMNode
from textual.screen import ModalScreen, Screen
from textual.widgets import Label, Static

KeyRows = list[tuple[str, str]]

# Key names as people write them ("ctrl+t" -> "Ctrl+T"); the README's key table uses the same.
_KEY_NAMES = {
    "escape": "Esc",
    "pageup": "PageUp",
    "pagedown": "PageDown",
    "minus": "-",
    "plus": "+",
    "equals_sign": "=",
    "slash": "/",
    "question_mark": "?",
    "delete": "Delete",
    "backspace": "Backspace",
}

# A few more words for the terse footer descriptions of the chat's keys (by action).
DETAILS = {
    "stop": "the reply is kept as far as it got; with messages queued, the first Esc clears them",
    "answer_now": "while the model thinks: stop thinking and answer",
    "toggle_thinking": "on or off, from the next message",
    "sessions": "browse, search, open, rename, delete",
    "new": "a new conversation",
    "retry": "write the last reply again (the old one stays, as another version)",
    "edit_last": "your last message into the composer; Enter sends it as a new version",
    "branch": "of the last message that has several (‹ 2/3 ›; a click on an arrow too)",
    "help": "this list",
    "copy_or_quit": "copy the selection; with none, ask before quitting",
}


def key_label(key: str) -> str:
    """ "ctrl+t" -> "Ctrl+T", "escape" -> "Esc", "f1" -> "F1", "shift+enter" -> "Shift+Enter"."""
    *modifiers, name = key.split("+")
    if name in _KEY_NAMES:
        shown = _KEY_NAMES[name]
    elif len(name) == 1:
        shown = name.upper() if modifiers else name
    else:
        shown = name[:1].upper() + name[1:]
    return "+".join([*(m.capitalize() for m in modifiers), shown])


def own_bindings(cls: type[DOMNode]) -> list[Binding]:
    """The bindings `cls` and its base classes declare, but Textual's own defaults (such as a
    table's arrow keys); a subclass's binding of a key replaces its base's."""
    by_key: dict[str, Binding] = {}
    for base in reversed(cls.__mro__):
        if base.__module__.split(".")[0] == "textual" or "BINDINGS" not in vars(base):
            continue
        for binding in Binding.make_bindings(vars(base)["BINDINGS"]):
            by_key[binding.key] = binding
    return list(by_key.values())


def binding_rows(bindings: Iterable[Binding]) -> KeyRows:
    """One row per described action: its keys, and what it does ("Left / -", "Smaller budget")."""
    keys_for: dict[tuple[str, str], list[str]] = {}
    for binding in bindings:
        if not binding.description:
            continue
        detail = DETAILS.get(binding.action)
        text = f"{binding.description} — {detail}" if detail else binding.description
        keys = keys_for.setdefault((binding.action, text), [])
        label = binding.key_display or key_label(binding.key)
        if label not in keys:
            keys.append(label)
    return [(" / ".join(keys), text) for (_, text), keys in keys_for.items()]


def describe_bindings(screen: Screen, app: App) -> KeyRows:
    """The keys of `screen` and of the app (see `screen_key_rows`)."""
    return screen_key_rows(type(screen), type(app))


def screen_key_rows(screen: type[Screen], app: type[App]) -> KeyRows:
    """The keys of a screen and of the app, hidden ones too (those are often the useful
    shortcuts), and the command palette's. A key the app takes first (a priority binding) is
    listed as the app's."""
    taken = {b.key for b in own_bindings(app) if b.priority}
    bindings = [b for b in own_bindings(screen) if b.key not in taken]
    bindings += own_bindings(app)
    rows = binding_rows(bindings)
    if app.ENABLE_COMMAND_PALETTE:
        rows.append((key_label(app.COMMAND_PALETTE_BINDING), "Command palette"))
    return rows


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
        sections: Sequence[tuple[str, KeyRows]] = (),
        name: str | None = None,
        id: str | None = None,
    ) -> None:
        """`keys` adds rows for keys that are not bindings (e.g. Enter in the composer), first;
        `sections` are more key tables under their own headings (e.g. `widget_sections()`)."""
        super().__init__(name=name, id=id)
        self.commands = list(commands)
        self.extra_keys = list(keys or [])
        self.sections = [(heading, list(rows)) for heading, rows in sections if rows]
        self.key_rows: KeyRows = []  # the first key table's rows
        self.all_key_rows: KeyRows = []  # every key table's rows

    def compose(self) -> ComposeResult:
        below = self._screen_below()
        self.key_rows = [*self.extra_keys]
        if below is not None:
            known = set(self.key_rows)
            self.key_rows += [row for row in describe_bindings(below, self.app) if row not in known]
        self.all_key_rows = [*self.key_rows, *(row for _, rows in self.sections for row in rows)]
        with VerticalScroll(id="help-dialog"):
            yield Label("Keys", classes="help-heading")
            yield _table("help-keys", self.key_rows)
            for i, (heading, rows) in enumerate(self.sections, start=1):
                yield Label(heading, classes="help-heading")
                yield _table(f"help-keys-{i}", rows)
            yield Label("Slash commands", classes="help-heading")
            yield _table("help-commands", self.commands)
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


def _table(table_id: str, rows: KeyRows) -> Grid:
    """Two columns of plain text; long descriptions wrap instead of being cut off."""
    cells = [
        Static(text, classes=f"help-{kind}", markup=False)
        for row in rows
        for kind, text in zip(("name", "text"), row, strict=True)
    ]
    return Grid(*cells, id=table_id, classes="help-table")
