"""Browse saved sessions: recent first, search as you type, open, rename, delete.

The store is read on a worker thread (it may wait for another program's lock), a moment after the
typing stops; each result comes back as a message and is shown only if it is still for the text
in the search box.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Button, DataTable, Footer, Input, Label, Static

from .confirm import ConfirmScreen

RECENT_LIMIT = 500  # more than anyone scrolls through; search reaches the rest
SEARCH_DELAY = 0.15  # seconds of no typing before the store is searched
# Typing in the list is read by the table, not a binding: the help screen lists it from here.
KEY_ROWS: tuple[tuple[str, str], ...] = (
    ("Any letter", "Search as you type (each word finds the words it begins)"),
)


class SessionSource(Protocol):
    """The part of qwen3tui.store.SessionStore this screen uses."""

    def list_sessions(self, limit: int | None = None) -> list[Any]: ...
    def search(self, query: str, include_thinking: bool = False) -> list[Any]: ...
    def rename_session(self, session_id: str, title: str) -> None: ...
    def delete_session(self, session_id: str) -> None: ...


def format_when(stamp: str) -> str:
    """An ISO time from the store as local "YYYY-MM-DD HH:MM" (as given if unparseable)."""
    try:
        moment = datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        return str(stamp)
    if moment.tzinfo is not None:
        moment = moment.astimezone()
    return moment.strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class Row:
    session_id: str
    title: str
    updated: str
    size: int | str  # messages; "" when unknown


@dataclass(frozen=True)
class Listing:
    """What the store gave for one search text ("" for the recent sessions)."""

    query: str
    rows: list[Row] = field(default_factory=list)
    snippets: dict[str, str] = field(default_factory=dict)
    # session id -> the message its best hit is in (none for a title hit): opened at its branch
    hit_messages: dict[str, int] = field(default_factory=dict)
    error: str | None = None


def read_listing(store: SessionSource, query: str) -> Listing:
    """The recent sessions, or the search results for `query`; a store error becomes one line.
    Runs on a worker thread."""
    try:
        recent = store.list_sessions(limit=None if query else RECENT_LIMIT)
        if not query:
            return Listing(query, [Row(s.id, s.title, s.updated, s.message_count) for s in recent])
        sizes = {s.id: s.message_count for s in recent}
        hits = store.search(query)
    except Exception as err:  # noqa: BLE001 -- StoreError etc.: said on the screen, not raised
        return Listing(query, error=str(err).splitlines()[0] if str(err) else type(err).__name__)
    rows = [Row(h.session_id, h.title, h.updated, sizes.get(h.session_id, "")) for h in hits]
    messages = {h.session_id: h.message_id for h in hits if h.message_id is not None}
    return Listing(query, rows, {h.session_id: h.snippet for h in hits}, messages)


class TextPromptScreen(ModalScreen[str | None]):
    """Ask for one line of text; Enter gives it (stripped), Esc or an empty line gives None."""

    CSS_PATH = Path(__file__).with_name("sessions.tcss")
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, prompt: str, value: str = "") -> None:
        super().__init__()
        self.prompt = prompt
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-dialog"):
            yield Label(self.prompt, id="prompt-label", markup=False)
            yield Input(self.value, id="prompt-input", select_on_focus=True)
            yield Label("Enter saves · Esc cancels", id="prompt-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class SessionTable(DataTable):
    """The session list. Typing here searches: a printable key goes to the search box (so no
    letter is a shortcut); the title column takes the width the date and size leave."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter", "select_cursor", "Open")]

    DATE_WIDTH = 16  # "YYYY-MM-DD HH:MM"
    SIZE_LABEL = "Messages"
    MIN_TITLE = 8

    class TypedAhead(Message):
        """A printable key pressed in the list: it belongs in the search box."""

        def __init__(self, character: str) -> None:
            super().__init__()
            self.character = character

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rows_shown: list[Row] = []
        self._title_width = 0

    def on_mount(self) -> None:
        self._add_columns()

    def _add_columns(self) -> None:
        self.clear(columns=True)
        self._title_width = self._fit_title()
        self.add_column("Title", key="title", width=self._title_width)
        self.add_column("Updated", key="updated", width=self.DATE_WIDTH)
        self.add_column(self.SIZE_LABEL, key="size", width=len(self.SIZE_LABEL))

    def _fit_title(self) -> int:
        # Every column has padding on both sides; room is kept for a scrollbar.
        padding = 2 * self.cell_padding * 3
        others = self.DATE_WIDTH + len(self.SIZE_LABEL) + padding + self.scrollbar_size_vertical
        return max(self.MIN_TITLE, self.size.width - others)

    def show(self, rows: list[Row]) -> None:
        """Show these rows, keeping the cursor on the same session when it is still there."""
        previous = self.cursor_key()
        self.rows_shown = rows
        self.clear()
        for row in rows:
            # Text cells: a title is the user's words, never markup.
            title = Text(row.title or "(untitled)", no_wrap=True, overflow="ellipsis")
            title.truncate(self._title_width, overflow="ellipsis")
            self.add_row(
                title,
                Text(format_when(row.updated)),
                Text(str(row.size), justify="right"),
                key=row.session_id,
            )
        if previous is not None and any(r.session_id == previous for r in rows):
            self.move_cursor(row=self.get_row_index(previous))

    def cursor_key(self) -> str | None:
        if self.row_count == 0:
            return None
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return row_key.value

    def on_resize(self, event: events.Resize) -> None:
        if self.columns and self._fit_title() != self._title_width:
            self._add_columns()
            self.show(self.rows_shown)

    async def _on_key(self, event: events.Key) -> None:
        if event.is_printable and event.character:
            event.stop()
            event.prevent_default()
            self.post_message(self.TypedAhead(event.character))
            return
        await super()._on_key(event)


class SessionsScreen(ModalScreen[str | None]):
    """Pick a saved session; dismisses with its id, or None when closed."""

    CSS_PATH = Path(__file__).with_name("sessions.tcss")

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("f2", "rename", "Rename"),
        Binding("delete", "delete", "Delete"),
        Binding("ctrl+f", "focus_search", "Search", show=False),
        Binding("down", "focus_table", "List", show=False),
    ]

    def __init__(
        self, store: SessionSource, *, name: str | None = None, id: str | None = None
    ) -> None:
        super().__init__(name=name, id=id)
        self.store = store
        self.titles: dict[str, str] = {}  # id -> title of the rows shown
        self.snippets: dict[str, str] = {}
        self.shown: Listing | None = None  # what the table shows
        self._search_timer: Timer | None = None
        self._open_when_listed = False  # Enter came before the results for the typed text

    class Listed(Message):
        """Posted from the reading thread: the listing for one search text."""

        def __init__(self, listing: Listing) -> None:
            super().__init__()
            self.listing = listing

    def compose(self) -> ComposeResult:
        with Vertical(id="sessions-dialog"):
            yield Label("Sessions", id="sessions-title")
            # Not selecting on focus: a letter typed in the list is already in it then.
            yield Input(
                placeholder="Type to search all conversations…",
                id="sessions-search",
                select_on_focus=False,
            )
            yield SessionTable(id="sessions-table", cursor_type="row", zebra_stripes=True)
            with Horizontal(id="sessions-buttons"):
                yield Button("Open", id="sessions-open", variant="primary", compact=True)
                yield Button("Rename", id="sessions-rename", compact=True)
                yield Button("Delete", id="sessions-delete", variant="error", compact=True)
                yield Static("", id="sessions-detail", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_rows()
        self.query_one(SessionTable).focus()

    # ----- filling the table -----

    @property
    def search_text(self) -> str:
        return self.query_one("#sessions-search", Input).value.strip()

    @property
    def up_to_date(self) -> bool:
        """Whether the table shows the results for what the search box holds now."""
        return self.shown is not None and self.shown.query == self.search_text

    def refresh_rows(self) -> None:
        """Read the recent sessions, or the search results while the search box has words, on a
        worker thread; `Listed` brings them back."""
        if self._search_timer is not None:
            self._search_timer.stop()
            self._search_timer = None
        query, store = self.search_text, self.store

        def read() -> None:
            self.post_message(self.Listed(read_listing(store, query)))

        self.run_worker(read, thread=True, group="sessions-read", name="sessions-read")

    @on(Listed)
    def _listed(self, message: Listed) -> None:
        listing = message.listing
        if listing.query != self.search_text:
            return  # typed on since: the results for the new text are on their way
        self.shown = listing
        table = self.query_one(SessionTable)
        table.show(listing.rows)
        self.titles = {r.session_id: r.title for r in listing.rows}
        self.snippets = listing.snippets
        self._show_detail()
        if self._open_when_listed:
            self._open_when_listed = False
            self.action_open()

    def _show_detail(self) -> None:
        detail = self.query_one("#sessions-detail", Static)
        if self.shown is not None and self.shown.error is not None:
            detail.update(self.shown.error)
            return
        count = len(self.titles)
        if self.search_text:
            summary = f"{count} match{'es' if count != 1 else ''} for “{self.search_text}”"
        else:
            summary = (
                f"{count} session{'s' if count != 1 else ''}"
                if count
                else ("No saved sessions yet.")
            )
        snippet = self.snippets.get(self.selected_id() or "", "")
        detail.update(f"{summary}\n{snippet}" if snippet else summary)

    def hit_message(self, session_id: str) -> int | None:
        """The message holding the search hit shown for this session (None: not a search, or
        the title matched): the chat opens the branch that holds it."""
        if self.shown is None or not self.shown.query:
            return None
        return self.shown.hit_messages.get(session_id)

    def selected_id(self) -> str | None:
        if not self.titles:
            return None
        return self.query_one(SessionTable).cursor_key()

    # ----- events -----

    @on(Input.Changed, "#sessions-search")
    def _search_changed(self) -> None:
        # Searched once the typing pauses, not at every key.
        if self._search_timer is not None:
            self._search_timer.stop()
        self._search_timer = self.set_timer(SEARCH_DELAY, self.refresh_rows)

    @on(SessionTable.TypedAhead)
    def _typed_ahead(self, message: SessionTable.TypedAhead) -> None:
        search = self.query_one("#sessions-search", Input)
        search.focus()
        if message.character != "/":  # "/" only goes to the search box, as before
            search.insert_text_at_cursor(message.character)

    @on(Input.Submitted, "#sessions-search")
    def _search_submitted(self) -> None:
        if self.up_to_date:
            self.action_open()
        else:  # the rows shown are for an earlier text: open the best match once it is in
            self._open_when_listed = True

    @on(DataTable.RowSelected, "#sessions-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.dismiss(event.row_key.value)

    @on(Button.Pressed, "#sessions-buttons Button")
    def _button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        actions = {
            "sessions-open": self.action_open,
            "sessions-rename": self.action_rename,
            "sessions-delete": self.action_delete,
        }
        actions[event.button.id or ""]()

    @on(DataTable.RowHighlighted, "#sessions-table")
    def _row_highlighted(self) -> None:
        self._show_detail()

    # ----- actions -----

    def action_open(self) -> None:
        session_id = self.selected_id()
        if session_id is not None:
            self.dismiss(session_id)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_focus_search(self) -> None:
        self.query_one("#sessions-search", Input).focus()

    def action_focus_table(self) -> None:
        self.query_one(SessionTable).focus()

    def action_rename(self) -> None:
        session_id = self.selected_id()
        if session_id is None:
            return

        def renamed(title: str | None) -> None:
            if title:
                self._change(lambda: self.store.rename_session(session_id, title), "Rename")

        self.app.push_screen(
            TextPromptScreen("New title for this session:", self.titles[session_id]), renamed
        )

    def action_delete(self) -> None:
        session_id = self.selected_id()
        if session_id is None:
            return
        title = self.titles[session_id] or "(untitled)"

        def answered(yes: bool | None) -> None:
            if yes:
                self._change(lambda: self.store.delete_session(session_id), "Delete")

        self.app.push_screen(
            ConfirmScreen(f"Delete “{title}”? This cannot be undone.", yes_label="Delete"),
            answered,
        )

    def _change(self, change: Callable[[], None], what: str) -> None:
        """Run a write off the UI thread (the store may wait for another program's lock), then
        show the result."""

        async def run() -> None:
            try:
                await asyncio.to_thread(change)
            except Exception as err:  # noqa: BLE001 -- shown, not raised
                self.notify(f"{what} failed: {err}", severity="error")
                return
            self.refresh_rows()
            self.action_focus_table()
            self.post_message(self.Changed())

        self.run_worker(run(), group="session-change")

    class Changed(Message):
        """A session was renamed or deleted (its write is done)."""
