"""The slash-command suggestions above the composer, chosen with the arrow keys or the mouse.

They show while the composer holds "/" and part of a command's name (no space yet), at most
`MAX_ROWS` at a time with "+K more" under them when more match. The composer keeps the focus and
routes the keys here while they show:

- Up / Down move the highlight (wrapping around); otherwise they keep their composer meaning.
- Tab completes the highlighted command.
- Enter sends the line when it already names the highlighted command ("/help"); otherwise it
  completes the highlighted one, as Tab does (a command that takes arguments gets "/name ").
- Esc hides them until the text changes.
- A click completes the command clicked.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.message import Message
from textual.widget import Widget

from .. import slash_commands
from ..slash_commands import SlashCommand

MAX_ROWS = 6

# The keys above, for the help screen (they are read by the composer, not bindings).
KEY_ROWS: tuple[tuple[str, str], ...] = (
    ("Up / Down", "Move through the /command suggestions (while they show)"),
    ("Tab", "Complete the highlighted /command"),
    ("Enter", "Complete the highlighted /command; send it once it is typed in full"),
    ("Esc", "Hide the /command suggestions"),
)


@dataclass(frozen=True)
class Suggestions:
    """Which commands match the typed text, the highlighted one and the rows in view. Pure, so
    the rules are testable without a terminal."""

    typed: str = ""  # the composer's text they are for
    matches: tuple[SlashCommand, ...] = ()
    highlighted: int = 0
    top: int = 0  # the first match in view

    @classmethod
    def for_text(cls, text: str) -> Suggestions:
        matches = tuple(slash_commands.suggest(text, limit=len(slash_commands.COMMANDS)))
        name = text[1:].lower()
        # The command typed in full is highlighted, so Enter sends it.
        exact = next((i for i, c in enumerate(matches) if c.name == name), 0)
        return cls(text, matches).scrolled_to(exact)

    @property
    def current(self) -> SlashCommand | None:
        return self.matches[self.highlighted] if self.matches else None

    def move(self, step: int) -> Suggestions:
        if not self.matches:
            return self
        return self.scrolled_to((self.highlighted + step) % len(self.matches))

    def scrolled_to(self, index: int) -> Suggestions:
        top = min(self.top, index)
        top = max(top, index - MAX_ROWS + 1)
        return replace(self, highlighted=index, top=top)

    @property
    def in_view(self) -> tuple[SlashCommand, ...]:
        return self.matches[self.top : self.top + MAX_ROWS]

    @property
    def more(self) -> int:
        """How many match but are not in view."""
        return len(self.matches) - len(self.in_view)

    def completion(self) -> str | None:
        """The composer text that choosing the highlighted command gives."""
        command = self.current
        if command is None:
            return None
        return f"/{command.name} " if command.args else f"/{command.name}"

    def enter_sends(self) -> bool:
        """Enter sends the line (rather than completing) when it names the highlighted command."""
        command = self.current
        return command is None or self.typed.strip().lower() == f"/{command.name}"


class SlashSuggestions(Widget):
    """Shows `Suggestions`; never takes the focus (the composer keeps it)."""

    can_focus = False

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "slash-suggestions--highlight",
        "slash-suggestions--usage",
        "slash-suggestions--more",
    }

    DEFAULT_CSS = """
    SlashSuggestions {
        height: auto;
        pointer: pointer;
        & > .slash-suggestions--usage { color: $text; text-style: bold; }
        & > .slash-suggestions--highlight { background: $primary 40%; color: $text; }
        & > .slash-suggestions--more { color: $text-muted; text-style: italic; }
    }
    """

    class Chosen(Message):
        """A command was clicked: the composer completes it."""

        def __init__(self, completion: str) -> None:
            super().__init__()
            self.completion = completion

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.state = Suggestions()
        self._hidden_for: str | None = None  # Esc hid them while the text is this
        self.display = False

    @property
    def shown(self) -> bool:
        return bool(self.state.matches) and self._hidden_for != self.state.typed

    def update_for(self, text: str) -> None:
        """Follow the composer's text."""
        if text != self.state.typed:
            self.state = Suggestions.for_text(text)
            self._hidden_for = None
        self._refresh_shown()

    def move(self, step: int) -> None:
        self.state = self.state.move(step)
        self.refresh()

    def hide(self) -> None:
        self._hidden_for = self.state.typed
        self._refresh_shown()

    def _refresh_shown(self) -> None:
        self.display = self.shown
        self.refresh(layout=True)

    def render(self) -> Text:
        state = self.state
        width = max((len(c.usage) for c in state.matches), default=0)
        usage_style = self.get_component_rich_style("slash-suggestions--usage")
        highlight = self.get_component_rich_style("slash-suggestions--highlight")
        room = self.content_size.width
        lines = []
        for index, command in enumerate(state.in_view, start=state.top):
            line = Text.assemble(
                (f"{command.usage:<{width}}", usage_style), "  ", command.description
            )
            # One row per command, however narrow: the description gives way.
            line.truncate(room, overflow="ellipsis", pad=index == state.highlighted)
            if index == state.highlighted:
                line.stylize(highlight)  # padded: a whole-row bar
            lines.append(line)
        if state.more:
            more = self.get_component_rich_style("slash-suggestions--more")
            lines.append(Text(f"+{state.more} more  (↑↓)", style=more))
        return Text("\n").join(lines)

    def on_click(self, event: events.Click) -> None:
        index = self.state.top + event.y
        if event.y < len(self.state.in_view):
            self.state = self.state.scrolled_to(index)
            completion = self.state.completion()
            if completion is not None:
                self.post_message(self.Chosen(completion))
        event.stop()
