"""Slash-command suggestions: chosen with the arrow keys, Tab, Enter or a click; Esc hides them;
at most MAX_ROWS show, with "+K more" when more match; Up/Down keep their composer meaning
(earlier prompts) whenever no suggestions show."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_engine import FakeEngine
from tui_helpers import finish_turn, make_app, ready, send, wait_until

from qwen3tui.tui.screens.help import HelpScreen
from qwen3tui.tui.slash_commands import COMMANDS
from qwen3tui.tui.widgets.slash_suggestions import MAX_ROWS, Suggestions

pytestmark = pytest.mark.anyio

SIZE = (100, 36)
NAMES = [c.name for c in COMMANDS]


def names(state: Suggestions) -> list[str]:
    return [c.name for c in state.in_view]


# ----- the rules, without a terminal -----


def test_at_most_max_rows_are_in_view_and_the_rest_are_counted() -> None:
    state = Suggestions.for_text("/")
    assert names(state) == NAMES[:MAX_ROWS]
    assert state.more == len(NAMES) - MAX_ROWS
    few = Suggestions.for_text("/re")
    assert names(few) == ["resume", "rename", "retry"] and few.more == 0


def test_moving_the_highlight_scrolls_the_view_and_wraps_around() -> None:
    state = Suggestions.for_text("/")
    for _ in range(MAX_ROWS):
        state = state.move(1)
    assert state.current is not None and state.current.name == NAMES[MAX_ROWS]
    assert names(state) == NAMES[1 : MAX_ROWS + 1]  # scrolled by one to keep it in view
    assert state.move(-MAX_ROWS - 1).current.name == NAMES[-1]  # type: ignore[union-attr]
    assert Suggestions.for_text("/").move(-1).current.name == NAMES[-1]  # type: ignore[union-attr]


def test_enter_sends_a_line_that_names_the_highlighted_command_and_completes_otherwise() -> None:
    assert Suggestions.for_text("/help").enter_sends()
    assert Suggestions.for_text("/HELP").enter_sends()
    assert not Suggestions.for_text("/he").enter_sends()
    typed_think = Suggestions.for_text("/think")  # "think" and "thinking" both match
    assert typed_think.current.name == "think" and typed_think.enter_sends()  # type: ignore[union-attr]
    assert not typed_think.move(1).enter_sends()  # the user chose "thinking" instead
    assert typed_think.move(1).completion() == "/thinking "  # it takes an argument


def test_completion_adds_a_space_only_for_commands_with_arguments() -> None:
    assert Suggestions.for_text("/he").completion() == "/help"
    assert Suggestions.for_text("/bud").completion() == "/budget "
    assert Suggestions.for_text("hello").completion() is None


# ----- in the chat -----


async def test_arrows_move_the_highlight_and_tab_completes_it(qwen3tui_home: Path) -> None:
    app = make_app(FakeEngine(), qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        c.composer.focus()
        await pilot.press("slash")
        assert c.suggestions.display
        shown = str(c.suggestions.render())
        assert f"+{len(NAMES) - MAX_ROWS} more" in shown
        assert shown.count("\n") == MAX_ROWS  # the rows in view, then the "more" line
        await pilot.press("down", "down", "up", "down")
        assert c.suggestions.state.current.name == NAMES[2]  # type: ignore[union-attr]
        await pilot.press("tab")
        third = COMMANDS[2]
        assert c.composer.text == f"/{third.name}" + (" " if third.args else "")
        assert c.composer.has_focus


async def test_enter_completes_a_partial_name_then_sends_the_complete_command(
    qwen3tui_home: Path,
) -> None:
    app = make_app(FakeEngine(), qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        c.composer.focus()
        await pilot.press("slash", "h", "e", "enter")
        assert c.composer.text == "/help"
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")


async def test_enter_on_another_highlighted_command_completes_it_instead_of_sending(
    qwen3tui_home: Path,
) -> None:
    app = make_app(FakeEngine(), qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        c.composer.focus()
        await pilot.press(*"/think", "down", "enter")
        assert c.composer.text == "/thinking "
        assert not c.suggestions.display  # an argument is typed now, not a name


async def test_escape_hides_them_without_stopping_anything_until_the_text_changes(
    qwen3tui_home: Path,
) -> None:
    app = make_app(FakeEngine(), qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        c.composer.focus()
        await pilot.press(*"/re")
        assert c.suggestions.display
        await pilot.press("escape")
        assert not c.suggestions.display and c.composer.text == "/re"
        await pilot.press("t")
        assert c.suggestions.display
        assert [x.name for x in c.suggestions.state.in_view] == ["retry"]


async def test_clicking_a_suggestion_completes_it(qwen3tui_home: Path) -> None:
    app = make_app(FakeEngine(), qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        c.composer.focus()
        await pilot.press(*"/re")
        await pilot.pause()
        await pilot.click("#slash-suggestions", offset=(3, 1))  # the second row: /rename
        await wait_until(pilot, lambda: c.composer.text == "/rename ", what="the completion")
        assert c.composer.has_focus


async def test_up_and_down_walk_earlier_prompts_when_no_suggestions_show(
    qwen3tui_home: Path,
) -> None:
    app = make_app(FakeEngine(), qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "first")
        await finish_turn(pilot)
        await send(pilot, "/clear")
        c.composer.focus()
        await pilot.press("up")
        assert c.composer.text == "/clear"
        assert not c.suggestions.display  # a recalled prompt is not being typed
        await pilot.press("up")
        assert c.composer.text == "first"
        await pilot.press("down")
        assert c.composer.text == "/clear"
