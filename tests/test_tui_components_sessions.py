"""The sessions screen on a real SessionStore: list, search, open, rename, delete, close."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from store_helpers import add_reply
from textual.app import App, ComposeResult
from textual.widgets import DataTable, Input, Static

from qwen3tui.store import SessionStore
from qwen3tui.tui.screens.confirm import ConfirmScreen
from qwen3tui.tui.screens.sessions import SessionsScreen, TextPromptScreen, format_when

pytestmark = pytest.mark.anyio

CONVERSATIONS = [
    ("Plan a trip to Kyoto", "Spend three days: temples, Arashiyama, Nishiki market."),
    ("Explain int8 quantization", "Quantization maps float weights to 8-bit integers."),
    ("Write a haiku about rain", "Soft rain on the roof / ..."),
]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SessionStore]:
    with SessionStore.open(tmp_path / "sessions.db") as opened:
        yield opened


def fill(store: SessionStore) -> list[str]:
    """Three sessions, oldest first; returns their ids in that order."""
    ids = []
    for question, answer in CONVERSATIONS:
        session = store.create_session("Qwen/Qwen3-1.7B")
        store.add_user_message(session.id, question)
        add_reply(store, session.id, answer)
        ids.append(session.id)
    return ids


class Host(App[None]):
    def __init__(self, store: SessionStore) -> None:
        super().__init__()
        self.store = store
        self.results: list[str | None] = []

    def compose(self) -> ComposeResult:
        yield Static("chat")

    def on_mount(self) -> None:
        self.push_screen(SessionsScreen(self.store), self.results.append)


def table(app: App) -> DataTable:
    return app.screen.query_one("#sessions-table", DataTable)


def shown_titles(app: App) -> list[str]:
    t = table(app)
    return [str(t.get_row_at(i)[0]) for i in range(t.row_count)]


def detail(app: App) -> str:
    return str(app.screen.query_one("#sessions-detail", Static).render())


async def test_lists_sessions_most_recent_first_with_date_and_size(store: SessionStore) -> None:
    ids = fill(store)
    app = Host(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, SessionsScreen)
        assert shown_titles(app) == [q for q, _ in reversed(CONVERSATIONS)]
        newest = store.get_session(ids[-1])
        first_row = table(app).get_row_at(0)
        assert str(first_row[1]) == format_when(newest.updated)
        assert str(first_row[2]) == "2"  # the question and its answer
        assert "3 sessions" in detail(app)


async def test_search_filters_by_full_text_and_clearing_shows_all_again(
    store: SessionStore,
) -> None:
    fill(store)
    app = Host(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        app.screen.query_one("#sessions-search", Input).focus()
        await pilot.press(*"integers")  # only in an answer, not in any title
        await pilot.pause()
        assert shown_titles(app) == ["Explain int8 quantization"]
        assert "[integers]" in detail(app)  # the store's snippet, with the match marked
        search = app.screen.query_one("#sessions-search", Input)
        search.value = ""
        await pilot.pause()
        assert len(shown_titles(app)) == 3


async def test_a_search_with_no_words_says_so_instead_of_crashing(store: SessionStore) -> None:
    fill(store)
    app = Host(store)
    async with app.run_test(size=(120, 40)) as pilot:
        app.screen.query_one("#sessions-search", Input).focus()
        await pilot.press("*")
        await pilot.pause()
        assert shown_titles(app) == []
        assert "search needs at least one word" in detail(app)
        await pilot.press("enter")  # nothing to open: stays
        assert isinstance(app.screen, SessionsScreen) and app.results == []


async def test_enter_opens_the_highlighted_session(store: SessionStore) -> None:
    ids = fill(store)
    app = Host(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("down", "enter")
        await pilot.pause()
        assert app.results == [ids[1]]  # second most recent
        assert not isinstance(app.screen, SessionsScreen)


async def test_enter_in_the_search_box_opens_the_best_match(store: SessionStore) -> None:
    ids = fill(store)
    app = Host(store)
    async with app.run_test(size=(120, 40)) as pilot:
        app.screen.query_one("#sessions-search", Input).focus()
        await pilot.press(*"kyoto", "enter")
        await pilot.pause()
        assert app.results == [ids[0]]


async def test_clicking_a_row_highlights_it_and_clicking_again_opens_it(
    store: SessionStore,
) -> None:
    ids = fill(store)
    app = Host(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        region = table(app).region
        third_row = (region.x + 4, region.y + 3)  # the header is the first line
        await pilot.click(offset=third_row)
        await pilot.pause()
        assert table(app).cursor_row == 2 and app.results == []
        assert isinstance(app.screen, SessionsScreen)
        await pilot.click(offset=third_row)
        await pilot.pause()
        assert app.results == [ids[0]]


async def test_the_buttons_open_rename_and_delete_the_highlighted_session(
    store: SessionStore,
) -> None:
    ids = fill(store)
    app = Host(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.click("#sessions-rename")
        await pilot.pause()
        assert isinstance(app.screen, TextPromptScreen)
        await pilot.press("escape")
        await pilot.pause()
        await pilot.click("#sessions-delete")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await pilot.pause()
        assert len(store.list_sessions()) == 2
        await pilot.click("#sessions-open")
        await pilot.pause()
        assert app.results == [ids[1]]


async def test_titles_are_shown_literally_even_with_brackets(store: SessionStore) -> None:
    session = store.create_session("Qwen/Qwen3-1.7B")
    store.add_user_message(session.id, "[bold]why[/bold] does [x] fail?")
    app = Host(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert shown_titles(app) == [store.get_session(session.id).title]
        assert "[x]" in shown_titles(app)[0]
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await pilot.pause()
        assert store.list_sessions() == []


async def test_escape_closes_with_nothing(store: SessionStore) -> None:
    fill(store)
    app = Host(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("escape")
        await pilot.pause()
        assert app.results == [None]


async def test_delete_asks_first_and_no_keeps_the_session(store: SessionStore) -> None:
    ids = fill(store)
    app = Host(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "Write a haiku about rain" in app.screen.question
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, SessionsScreen)
        assert len(store.list_sessions()) == 3
        await pilot.press("d", "y")
        await pilot.pause()
        assert [s.id for s in store.list_sessions()] == [ids[1], ids[0]]
        assert shown_titles(app) == ["Explain int8 quantization", "Plan a trip to Kyoto"]
        assert app.results == []  # deleting does not close the screen


async def test_the_delete_key_also_deletes_after_confirmation(store: SessionStore) -> None:
    fill(store)
    app = Host(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("delete")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await pilot.pause()
        assert len(store.list_sessions()) == 2


async def test_rename_prompts_with_the_old_title_and_saves_the_new_one(
    store: SessionStore,
) -> None:
    ids = fill(store)
    app = Host(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, TextPromptScreen)
        prompt_input = app.screen.query_one(Input)
        assert prompt_input.value == "Write a haiku about rain"
        prompt_input.value = ""
        await pilot.press(*"Rain poems", "enter")
        await pilot.pause()
        assert isinstance(app.screen, SessionsScreen)
        assert store.get_session(ids[2]).title == "Rain poems"
        assert shown_titles(app)[0] == "Rain poems"


async def test_cancelling_a_rename_changes_nothing(store: SessionStore) -> None:
    ids = fill(store)
    app = Host(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("r")
        await pilot.pause()
        await pilot.press("x", "escape")
        await pilot.pause()
        assert isinstance(app.screen, SessionsScreen)
        assert store.get_session(ids[2]).title == "Write a haiku about rain"


async def test_typing_r_or_d_in_the_search_box_just_types(store: SessionStore) -> None:
    fill(store)
    app = Host(store)
    async with app.run_test(size=(120, 40)) as pilot:
        app.screen.query_one("#sessions-search", Input).focus()
        await pilot.press("r", "d")
        await pilot.pause()
        assert isinstance(app.screen, SessionsScreen)
        assert app.screen.query_one("#sessions-search", Input).value == "rd"
        assert len(store.list_sessions()) == 3


async def test_an_empty_store_says_so_and_enter_does_nothing(store: SessionStore) -> None:
    app = Host(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert "No saved sessions yet" in detail(app)
        await pilot.press("enter", "r", "d")
        await pilot.pause()
        assert isinstance(app.screen, SessionsScreen) and app.results == []


def test_times_show_in_local_time_to_the_minute() -> None:
    assert format_when("2026-01-02T03:04:05.123456") == "2026-01-02 03:04"
    assert format_when("not a time") == "not a time"
