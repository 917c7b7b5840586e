"""Browse saved sessions: recent first, full-text search, open, rename, delete."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Footer, Input, Label, Static

from .confirm import ConfirmScreen

RECENT_LIMIT = 500  # more than anyone scrolls through; search reaches the rest


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
    """The session list; single-letter shortcuts live here so typing in search never fires them."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Open"),
        Binding("r", "screen.rename", "Rename"),
        Binding("d", "screen.delete", "Delete"),
        Binding("slash", "screen.focus_search", "Search", show=False),
    ]


class SessionsScreen(ModalScreen[str | None]):
    """Pick a saved session; dismisses with its id, or None when closed."""

    CSS_PATH = Path(__file__).with_name("sessions.tcss")

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("f2", "rename", "Rename", show=False),
        Binding("delete", "delete", "Delete", show=False),
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

    def compose(self) -> ComposeResult:
        with Vertical(id="sessions-dialog"):
            yield Label("Sessions", id="sessions-title")
            yield Input(placeholder="Search all conversations…", id="sessions-search")
            yield SessionTable(id="sessions-table", cursor_type="row", zebra_stripes=True)
            with Horizontal(id="sessions-buttons"):
                yield Button("Open", id="sessions-open", variant="primary", compact=True)
                yield Button("Rename", id="sessions-rename", compact=True)
                yield Button("Delete", id="sessions-delete", variant="error", compact=True)
                yield Static("", id="sessions-detail", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(SessionTable)
        table.add_column("Title", key="title")
        table.add_column("Updated", key="updated")
        table.add_column("Messages", key="size")
        self.refresh_rows()
        table.focus()

    # ----- filling the table -----

    @property
    def search_text(self) -> str:
        return self.query_one("#sessions-search", Input).value.strip()

    def refresh_rows(self) -> None:
        """Show the recent sessions, or the search results while the search box has words."""
        table = self.query_one(SessionTable)
        detail = self.query_one("#sessions-detail", Static)
        previous = self.selected_id()
        table.clear()
        self.titles.clear()
        self.snippets.clear()
        try:
            recent = self.store.list_sessions(limit=None if self.search_text else RECENT_LIMIT)
            sizes = {s.id: s.message_count for s in recent}
            if self.search_text:
                hits = self.store.search(self.search_text)
                rows = [
                    (hit.session_id, hit.title, hit.updated, sizes.get(hit.session_id, ""))
                    for hit in hits
                ]
                self.snippets = {hit.session_id: hit.snippet for hit in hits}
            else:
                rows = [(s.id, s.title, s.updated, s.message_count) for s in recent]
        except Exception as err:  # noqa: BLE001 -- StoreError etc.: say it, keep the screen
            detail.update(str(err).splitlines()[0] if str(err) else type(err).__name__)
            return
        for session_id, title, updated, size in rows:
            self.titles[session_id] = title
            # Text cells: a title is the user's words, never markup.
            table.add_row(
                Text(title or "(untitled)"),
                Text(format_when(updated)),
                Text(str(size), justify="right"),
                key=session_id,
            )
        if previous in self.titles:
            table.move_cursor(row=table.get_row_index(previous))
        self._show_detail()

    def _show_detail(self) -> None:
        detail = self.query_one("#sessions-detail", Static)
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

    def selected_id(self) -> str | None:
        table = self.query_one(SessionTable)
        if not self.titles or table.row_count == 0:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return row_key.value

    # ----- events -----

    @on(Input.Changed, "#sessions-search")
    def _search_changed(self) -> None:
        self.refresh_rows()

    @on(Input.Submitted, "#sessions-search")
    def _search_submitted(self) -> None:
        self.action_open()

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
