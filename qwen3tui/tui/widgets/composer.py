"""The composer: a multi-line TextArea where Enter sends and Shift+Enter / Ctrl+J add a line.

Up/Down in an empty composer (or while showing a recalled prompt) walk earlier prompts;
Tab completes a partly typed slash command, or a path after "@". While slash-command suggestions
show, Up/Down/Tab/Enter/Esc are theirs (`slash_suggestions` has the rules).
"""

from __future__ import annotations

import re
import time

from textual import events, on
from textual.message import Message
from textual.widgets import TextArea

from qwen3tui.file_attach import common_prefix, complete_path

from .slash_suggestions import SlashSuggestions, Suggestions

# "@part" just before the cursor, at a word start ("@@" is a literal "@", not a path).
AT_FRAGMENT = re.compile(r"(?<!\S)@(?!@)(\S*)$")

NEWLINE_KEYS = ("shift+enter", "ctrl+j")


class PromptHistory:
    """Earlier prompts, walked with Up/Down; pure so it is testable without a terminal."""

    def __init__(self, entries: list[str] | None = None) -> None:
        self.entries: list[str] = list(entries or [])
        self.index: int | None = None  # None: not browsing

    def add(self, text: str) -> None:
        if text and (not self.entries or self.entries[-1] != text):
            self.entries.append(text)
        self.index = None

    def older(self) -> str | None:
        if not self.entries:
            return None
        self.index = len(self.entries) - 1 if self.index is None else max(0, self.index - 1)
        return self.entries[self.index]

    def newer(self) -> str | None:
        """The next newer prompt; "" past the newest (back to an empty composer)."""
        if self.index is None:
            return None
        if self.index >= len(self.entries) - 1:
            self.index = None
            return ""
        self.index += 1
        return self.entries[self.index]

    def current(self) -> str | None:
        return None if self.index is None else self.entries[self.index]


class Composer(TextArea):
    """Where the user types; posts `Composer.Submitted` on Enter."""

    class Submitted(Message):
        def __init__(self, composer: Composer, text: str) -> None:
            super().__init__()
            self.composer = composer
            self.text = text

    def __init__(
        self, *, id: str | None = None, suggestions: SlashSuggestions | None = None
    ) -> None:
        super().__init__(
            id=id,
            soft_wrap=True,
            show_line_numbers=False,
            tab_behavior="focus",
            compact=True,
            placeholder="Message Qwen3  (/ for commands)",
        )
        self.prompts = PromptHistory()
        self.last_keystroke = float("-inf")  # time.monotonic() of the last edit by the user
        self.suggestions = suggestions  # shown above the composer, by the screen
        # Texts sent (Submitted posted) that the screen has not taken yet: a second Enter
        # before it does sends only what was typed after them, never them again.
        self.in_flight: list[str] = []

    async def _on_key(self, event: events.Key) -> None:
        if event.is_printable or event.key in ("backspace", "delete"):
            self.last_keystroke = time.monotonic()
        if self._suggestion_key(event.key):
            event.stop()
            event.prevent_default()
            return
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.send()
            return
        if event.key == "tab" and (self._complete_command() or self._complete_path()):
            event.stop()
            event.prevent_default()
            return
        if event.key in NEWLINE_KEYS:
            event.stop()
            event.prevent_default()
            self.insert("\n")
            return
        await super()._on_key(event)

    @on(TextArea.Changed)
    def _text_changed(self) -> None:
        if self.suggestions is not None:
            self.suggestions.update_for(self._suggest_for())

    def _suggest_for(self) -> str:
        """The text suggestions follow: none for a recalled prompt, so Up/Down keep walking."""
        recalled = self.prompts.index is not None and self.text == self.prompts.current()
        return "" if recalled else self.text

    def _suggestion_key(self, key: str) -> bool:
        """Up/Down/Tab/Enter/Esc while suggestions show; whether the key was theirs."""
        shown = self.suggestions
        if shown is None or key not in ("up", "down", "tab", "enter", "escape"):
            return False
        shown.update_for(self._suggest_for())  # the Changed message may not have come yet
        if not shown.shown:
            return False
        if key in ("up", "down"):
            shown.move(-1 if key == "up" else 1)
        elif key == "escape":
            shown.hide()
        elif key == "enter" and shown.state.enter_sends():
            self.send()
        else:
            self.choose(shown.state.completion())
        return True

    def send(self) -> None:
        """Post what is typed, less any text already sent that the screen has not taken."""
        text = self.text
        for pending in self.in_flight:
            if text.startswith(pending):
                text = text[len(pending) :]
        self.in_flight.append(text)
        self.post_message(self.Submitted(self, text))

    def taken(self, text: str) -> None:
        """The screen has handled a sent text (sent or refused): stop holding it back."""
        if text in self.in_flight:
            self.in_flight.remove(text)

    def choose(self, completion: str | None) -> None:
        """Put a chosen command in the composer (Tab, Enter or a click on a suggestion)."""
        if completion is not None:
            self._show(completion)

    def _complete_command(self) -> bool:
        """Tab after a partial "/comm" with the suggestions hidden: the first suggested command."""
        state = Suggestions.for_text(self.text)
        completion = state.completion()
        if completion is None or self.text == completion:
            return False
        self._show(completion)
        return True

    def _complete_path(self) -> bool:
        """Tab after "@part": complete the path as far as it is unambiguous; when it already
        is, list the choices in a notification."""
        row, column = self.cursor_location
        before = self.document.get_line(row)[:column]
        match = AT_FRAGMENT.search(before)
        if match is None:
            return False
        fragment = match.group(1)
        choices = complete_path(fragment)
        if not choices:
            self.notify(
                f"No file starts with {fragment or 'anything here'}",
                severity="warning",
                markup=False,
            )
            return True
        longest = common_prefix(choices)
        if len(longest) > len(fragment):
            self.insert(longest[len(fragment) :])
        elif len(choices) > 1:
            shown = "  ".join(_leaf(c) for c in choices[:12])
            more = f"  (+{len(choices) - 12} more)" if len(choices) > 12 else ""
            self.notify(shown + more, title="@ completions", markup=False)
        return True

    def _browsing(self) -> bool:
        return self.text == "" or self.text == self.prompts.current()

    def action_cursor_up(self, select: bool = False) -> None:
        if not select and self._browsing() and self.cursor_location[0] == 0:
            recalled = self.prompts.older()
            if recalled is not None:
                self._show(recalled)
                return
        super().action_cursor_up(select)

    def action_cursor_down(self, select: bool = False) -> None:
        last_row = self.document.line_count - 1
        if (
            not select
            and self.prompts.index is not None
            and self._browsing()
            and self.cursor_location[0] == last_row
        ):
            recalled = self.prompts.newer()
            if recalled is not None:
                self._show(recalled)
                return
        super().action_cursor_down(select)

    def _show(self, text: str) -> None:
        self.text = text
        self.move_cursor(self.document.end)

    def clear_sent(self, text: str) -> None:
        """Take the sent text out of the composer, remembering the prompt for Up.

        What was typed after Enter, before the app got to the message, stays: a fast typist
        on a busy machine loses no keystrokes.
        """
        self.prompts.add(text.strip())
        at = self.text.find(text) if text else -1
        if at >= 0:  # at the start, or after an earlier sent text that was refused (kept)
            self.text = self.text[:at] + self.text[at + len(text) :]
            self.move_cursor(self.document.end)


def _leaf(path: str) -> str:
    """The last part of a completed path, "/" kept on a directory."""
    leaf = path.rstrip("/").rpartition("/")[2]
    return leaf + "/" if path.endswith("/") else leaf
