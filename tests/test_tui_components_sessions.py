"""The sessions screen on a real SessionStore: list, search as you type, open, rename, delete,
close; the store is read off the UI thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from store_helpers import add_reply
from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static
from tui_helpers import wait_until

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


async def listed(pilot: Pilot[Any]) -> None:
    """Wait until the table shows what the store holds for the text in the search box."""
    await wait_until(
        pilot,
        lambda: isinstance(pilot.app.screen, SessionsScreen) and pilot.app.screen.up_to_date,
        what="the sessions to be listed",
    )


async def titles_become(pilot: Pilot[Any], titles: list[str]) -> None:
    await wait_until(pilot, lambda: shown_titles(pilot.app) == titles, what=f"rows {titles}")


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
        await listed(pilot)
        assert shown_titles(app) == [q for q, _ in reversed(CONVERSATIONS)]
        newest = store.get_session(ids[-1])
        first_row = table(app).get_row_at(0)
        assert str(first_row[1]) == format_when(newest.updated)
        assert str(first_row[2]) == "2"  # the question and its answer
        assert "3 sessions" in detail(app)


@pytest.mark.parametrize("width", [80, 60])
async def test_date_and_message_count_stay_whole_when_narrow_and_the_title_shrinks(
    store: SessionStore, width: int
) -> None:
    session = store.create_session("Qwen/Qwen3-1.7B")
    store.add_user_message(session.id, "A very long question about " + "many things " * 12)
    updated = format_when(store.get_session(session.id).updated)
    app = Host(store)
    async with app.run_test(size=(width, 24)) as pilot:
        await listed(pilot)
        t = table(app)
        assert t.region.right <= width
        header, first = t.render_line(0).text, t.render_line(1).text
        assert "Updated" in header and "Messages" in header
        assert updated in first and first.rstrip().endswith("1")  # the date and size, whole
        assert "A very long question" in first and "…" in first  # the title gave way


async def test_typing_in_the_list_searches_as_you_type(store: SessionStore) -> None:
    fill(store)
    app = Host(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await listed(pilot)
        assert table(app).has_focus
        await pilot.press(*"quant")  # a word prefix: "quantization"
        await listed(pilot)
        assert app.screen.query_one("#sessions-search", Input).value == "quant"
        assert shown_titles(app) == ["Explain int8 quantization"]
        await pilot.press(*"iza")  # "quantiza": typed past the stem "quantiz"
        await listed(pilot)
        assert shown_titles(app) == ["Explain int8 quantization"]


async def test_slash_in_the_list_goes_to_the_search_box_without_typing_it(
    store: SessionStore,
) -> None:
    fill(store)
    app = Host(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await listed(pilot)
        await pilot.press("/")
        search = app.screen.query_one("#sessions-search", Input)
        assert search.has_focus and search.value == ""


async def test_search_filters_by_full_text_and_clearing_shows_all_again(
    store: SessionStore,
) -> None:
    fill(store)
    app = Host(store)
    async with app.run_test(size=(120, 40)) as pilot:
        app.screen.query_one("#sessions-search", Input).focus()
        await pilot.press(*"integers")  # only in an answer, not in any title
        await listed(pilot)
        assert shown_titles(app) == ["Explain int8 quantization"]
        assert "[integers]" in detail(app)  # the store's snippet, with the match marked
        search = app.screen.query_one("#sessions-search", Input)
        search.value = ""
        await listed(pilot)
        assert len(shown_titles(app)) == 3


class SlowStore:
    """A store whose search waits until the test lets it go (another program's lock, say)."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store
        self.searching = threading.Event()
        self.release = threading.Event()
        self.queries: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def search(self, query: str, include_thinking: bool = False) -> list[Any]:
        self.queries.append(query)
        self.searching.set()
        self.release.wait(10)
        return self.store.search(query, include_thinking)


async def test_a_slow_search_never_blocks_typing_and_only_the_last_text_is_shown(
    store: SessionStore,
) -> None:
    fill(store)
    slow = SlowStore(store)
    app = Host(slow)  # type: ignore[arg-type]
    async with app.run_test(size=(120, 40)) as pilot:
        await listed(pilot)
        await pilot.press(*"kyoto")
        await wait_until(pilot, slow.searching.is_set, what="the search to start")
        # The store is stuck; the screen still takes keys.
        await pilot.press(*" trip")
        assert app.screen.query_one("#sessions-search", Input).value == "kyoto trip"
        assert not app.screen.up_to_date
        slow.release.set()
        await listed(pilot)
        assert shown_titles(app) == ["Plan a trip to Kyoto"]
        assert slow.queries[-1] == "kyoto trip"


async def test_a_search_with_no_words_says_so_instead_of_crashing(store: SessionStore) -> None:
    fill(store)
    app = Host(store)
    async with app.run_test(size=(120, 40)) as pilot:
        app.screen.query_one("#sessions-search", Input).focus()
        await pilot.press("*")
        await listed(pilot)
        assert shown_titles(app) == []
        assert "search needs at least one word" in detail(app)
        await pilot.press("enter")  # nothing to open: stays
        await pilot.pause()
        assert isinstance(app.screen, SessionsScreen) and app.results == []


async def test_enter_opens_the_highlighted_session(store: SessionStore) -> None:
    ids = fill(store)
    app = Host(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await listed(pilot)
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: app.results != [], what="the screen to close")
        assert app.results == [ids[1]]  # second most recent
        assert not isinstance(app.screen, SessionsScreen)


async def test_enter_in_the_search_box_opens_the_best_match_even_before_it_is_listed(
    store: SessionStore,
) -> None:
    ids = fill(store)
    app = Host(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await listed(pilot)
        await pilot.press(*"kyoto", "enter")  # faster than the search: it waits for it
        await wait_until(pilot, lambda: app.results != [], what="the screen to close")
        assert app.results == [ids[0]]


async def test_clicking_a_row_highlights_it_and_clicking_again_opens_it(
    store: SessionStore,
) -> None:
    ids = fill(store)
    app = Host(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await listed(pilot)
        region = table(app).region
        third_row = (region.x + 4, region.y + 3)  # the header is the first line
        await pilot.click(offset=third_row)
        await pilot.pause()
        assert table(app).cursor_row == 2 and app.results == []
        assert isinstance(app.screen, SessionsScreen)
        await pilot.click(offset=third_row)
        await wait_until(pilot, lambda: app.results != [], what="the screen to close")
        assert app.results == [ids[0]]


async def test_the_buttons_open_rename_and_delete_the_highlighted_session(
    store: SessionStore,
) -> None:
    ids = fill(store)
    app = Host(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await listed(pilot)
        await pilot.click("#sessions-rename")
        await wait_until(pilot, lambda: isinstance(app.screen, TextPromptScreen), what="prompt")
        await pilot.press("escape")
        await listed(pilot)
        await pilot.click("#sessions-delete")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="question")
        await pilot.press("y")
        await titles_become(pilot, ["Explain int8 quantization", "Plan a trip to Kyoto"])
        assert len(store.list_sessions()) == 2
        await pilot.click("#sessions-open")
        await wait_until(pilot, lambda: app.results != [], what="the screen to close")
        assert app.results == [ids[1]]


async def test_titles_are_shown_literally_even_with_brackets(store: SessionStore) -> None:
    session = store.create_session("Qwen/Qwen3-1.7B")
    store.add_user_message(session.id, "[bold]why[/bold] does [x] fail?")
    app = Host(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await listed(pilot)
        assert shown_titles(app) == [store.get_session(session.id).title]
        assert "[x]" in shown_titles(app)[0]
        await pilot.press("delete")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="question")
        await pilot.press("y")
        await titles_become(pilot, [])
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
        await listed(pilot)
        await pilot.press("delete")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="question")
        assert "Write a haiku about rain" in app.screen.question
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, SessionsScreen)
        assert len(store.list_sessions()) == 3
        await pilot.press("delete", "y")
        await titles_become(pilot, ["Explain int8 quantization", "Plan a trip to Kyoto"])
        assert [s.id for s in store.list_sessions()] == [ids[1], ids[0]]
        assert app.results == []  # deleting does not close the screen


async def test_rename_prompts_with_the_old_title_and_saves_the_new_one(
    store: SessionStore,
) -> None:
    ids = fill(store)
    app = Host(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await listed(pilot)
        await pilot.press("f2")
        await wait_until(pilot, lambda: isinstance(app.screen, TextPromptScreen), what="prompt")
        prompt_input = app.screen.query_one(Input)
        assert prompt_input.value == "Write a haiku about rain"
        prompt_input.value = ""
        await pilot.press(*"Rain poems", "enter")
        await wait_until(
            pilot, lambda: shown_titles(app)[:1] == ["Rain poems"], what="the new title"
        )
        assert isinstance(app.screen, SessionsScreen)
        assert store.get_session(ids[2]).title == "Rain poems"


async def test_cancelling_a_rename_changes_nothing(store: SessionStore) -> None:
    ids = fill(store)
    app = Host(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await listed(pilot)
        await pilot.press("f2")
        await wait_until(pilot, lambda: isinstance(app.screen, TextPromptScreen), what="prompt")
        await pilot.press("x", "escape")
        await pilot.pause()
        assert isinstance(app.screen, SessionsScreen)
        assert store.get_session(ids[2]).title == "Write a haiku about rain"


async def test_letters_are_never_shortcuts_they_search(store: SessionStore) -> None:
    fill(store)
    app = Host(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await listed(pilot)
        await pilot.press("r", "d")  # once rename and delete; now the start of a search
        await listed(pilot)
        assert isinstance(app.screen, SessionsScreen)
        assert app.screen.query_one("#sessions-search", Input).value == "rd"
        assert len(store.list_sessions()) == 3


async def test_an_empty_store_says_so_and_enter_does_nothing(store: SessionStore) -> None:
    app = Host(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await listed(pilot)
        assert "No saved sessions yet" in detail(app)
        await pilot.press("enter", "f2", "delete")
        await pilot.pause()
        assert isinstance(app.screen, SessionsScreen) and app.results == []


def test_times_show_in_local_time_to_the_minute() -> None:
    assert format_when("2026-01-02T03:04:05.123456") == "2026-01-02 03:04"
    assert format_when("not a time") == "not a time"
