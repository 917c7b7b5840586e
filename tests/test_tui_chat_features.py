"""Issue 13's chat features, driven with Pilot: answer now, the thinking display preference,
messages queued while a reply streams, exact budgets, and confirmations that come and go."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fake_engine import FakeEngine
from tui_helpers import chat, finish_turn, make_app, ready, send, wait_for_thread, wait_until

from qwen3tui.settings import TurnSettings, UserSettings
from qwen3tui.tui import slash_commands
from qwen3tui.tui.widgets.chat_message import Notice, UserMessage

pytestmark = pytest.mark.anyio

SIZE = (100, 36)


def notices(app: Any) -> list[str]:
    return [n.text for n in chat(app).conversation.query(Notice)]


def record_notifications(app: Any) -> list[tuple[str, float | None]]:
    """Every toast the app shows from now on, (message, timeout), as it is posted: reading the
    app's live list instead would lose those that timed out on a slow machine."""
    posted: list[tuple[str, float | None]] = []
    notify = app.notify

    def spy(message: Any, *args: Any, **kwargs: Any) -> Any:
        posted.append((str(message), kwargs.get("timeout")))
        return notify(message, *args, **kwargs)

    app.notify = spy
    return posted


def footer_actions(app: Any) -> set[str]:
    """The actions the chat's footer offers now."""
    return {b.binding.action for b in chat(app).active_bindings.values()}


# ----- answer now -----


async def test_answer_now_is_offered_only_while_the_model_thinks(qwen3tui_home: Path) -> None:
    engine = FakeEngine(hold_after=2)
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert "answer_now" not in footer_actions(app)
        await send(pilot, "hi")
        await wait_for_thread(engine.holding)
        await wait_until(pilot, lambda: "answer_now" in footer_actions(app), what="the key")
        engine.release.set()
        await finish_turn(pilot)
        assert "answer_now" not in footer_actions(app)


async def test_the_answer_now_key_ends_the_thinking_and_the_reply_says_so(
    qwen3tui_home: Path,
) -> None:
    engine = FakeEngine(hold_after=2)
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "hi")
        await wait_for_thread(engine.holding)
        await pilot.press("ctrl+g")
        reply = c.replies()[-1]
        assert str(reply.pane.answer_button.label) == "Answering…"
        engine.release.set()
        await finish_turn(pilot)
        assert reply.thinking_text == "Let me"  # two tokens, then the answer
        assert reply.answer_text == "**Hello** from the fake engine."
        assert reply.pane.title.endswith("· answered early")
        assert not reply.pane.answer_button.display
        saved = c.store.get_session(c.session_id).messages[-1]
        assert saved.usage["thinking_cut_by_user"] is True and saved.status == "complete"


async def test_the_answer_now_button_on_the_thinking_pane_does_the_same(
    qwen3tui_home: Path,
) -> None:
    engine = FakeEngine(hold_after=3)
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "hi")
        await wait_for_thread(engine.holding)
        await pilot.pause()
        assert await pilot.click(".answer-now")
        engine.release.set()
        await finish_turn(pilot)
        assert c.replies()[-1].thinking_text == "Let me think"
        assert c.replies()[-1].pane.title.endswith("· answered early")


async def test_answer_now_after_the_thinking_changes_nothing(qwen3tui_home: Path) -> None:
    engine = FakeEngine(hold_after=8)  # all 6 thinking tokens and 2 of the answer
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "hi")
        await wait_for_thread(engine.holding)
        await wait_until(pilot, lambda: not c.replies()[-1].thinking_live, what="the answer")
        assert "answer_now" not in footer_actions(app)
        await pilot.press("ctrl+g")
        engine.release.set()
        await finish_turn(pilot)
        assert not c.replies()[-1].pane.title.endswith("answered early")
        assert c.store.get_session(c.session_id).messages[-1].usage["thinking_cut_by_user"] is False


async def test_a_reopened_session_still_says_the_thinking_was_cut_short(
    qwen3tui_home: Path,
) -> None:
    engine = FakeEngine(hold_after=2)
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "hi")
        await wait_for_thread(engine.holding)
        await pilot.press("ctrl+g")
        engine.release.set()
        await finish_turn(pilot)
        session_id = c.session_id
        c.open_session(session_id)
        await pilot.pause()
        assert c.replies()[-1].pane.title.endswith("· answered early")


# ----- the thinking display preference -----


async def test_thinking_hidden_shows_one_line_and_still_saves_the_reasoning(
    qwen3tui_home: Path,
) -> None:
    engine = FakeEngine()
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "/thinking hidden")
        assert UserSettings.load().thinking_display == "hidden"  # in settings.toml
        await send(pilot, "hi")
        await finish_turn(pilot)
        pane = c.replies()[-1].pane
        assert pane.has_class("-hidden") and pane.collapsed
        assert pane.title == "Thought for 4.2 s · 6 tokens"
        assert pane.body.source == ""  # never rendered
        assert c.replies()[-1].thinking_text == "Let me think about that."
        saved = c.store.get_session(c.session_id).messages[-1]
        assert saved.thinking == "Let me think about that."
        await pilot.click(".thinking-pane.-hidden CollapsibleTitle")
        await pilot.pause()
        assert not pane.collapsed  # the click went through, and still nothing shows
        assert not pane.query_one("Contents").display


async def test_thinking_expanded_keeps_the_pane_open_after_the_answer(
    qwen3tui_home: Path,
) -> None:
    app = make_app(FakeEngine(), qwen3tui_home, settings=UserSettings(thinking_display="expanded"))
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "hi")
        await finish_turn(pilot)
        assert not c.replies()[-1].pane.collapsed
        await send(pilot, "/thinking collapsed")
        assert c.replies()[-1].pane.collapsed  # the replies on screen follow
        assert UserSettings.load().thinking_display == "collapsed"


async def test_the_default_collapses_the_pane_once_the_answer_starts(qwen3tui_home: Path) -> None:
    app = make_app(FakeEngine(), qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        assert c.thinking_display == "collapsed"
        await send(pilot, "hi")
        await finish_turn(pilot)
        assert c.replies()[-1].pane.collapsed


async def test_a_bad_thinking_display_is_one_inline_line(qwen3tui_home: Path) -> None:
    app = make_app(FakeEngine(), qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "/thinking loud")
        assert notices(app) == [
            "/thinking needs how to show reasoning: /thinking expanded|collapsed|hidden"
        ]
        assert c.thinking_display == "collapsed"


def test_the_palette_offers_each_thinking_display() -> None:
    texts = {text for _, text, _ in slash_commands.palette_entries()}
    assert {"/thinking expanded", "/thinking collapsed", "/thinking hidden"} <= texts


# ----- messages sent while a reply streams -----


async def test_messages_sent_while_a_reply_streams_are_queued_as_their_own_turns(
    qwen3tui_home: Path,
) -> None:
    engine = FakeEngine(hold_after=2)
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "one")
        await wait_for_thread(engine.holding)
        await send(pilot, "two")
        assert c.composer.border_subtitle == "1 queued · Esc clears"
        await send(pilot, "three")
        assert c.composer.border_subtitle == "2 queued · Esc clears"
        assert c.composer.text == ""
        shown = [m.text for m in c.conversation.query(UserMessage)]
        assert shown == ["one", "two", "three"]  # visible at once
        engine.release.set()
        await wait_until(pilot, lambda: len(engine.calls) == 3, what="three turns")
        await finish_turn(pilot)
        assert [call.messages[-1]["content"] for call in engine.calls] == ["one", "two", "three"]
        assert [m["role"] for m in engine.calls[2].messages] == ["user", "assistant"] * 2 + ["user"]
        assert c.composer.border_subtitle == ""
        saved = c.store.get_session(c.session_id).messages
        assert [m.content for m in saved if m.role == "user"] == ["one", "two", "three"]
        assert len([m for m in saved if m.role == "assistant"]) == 3


async def test_the_first_esc_clears_the_queue_and_the_second_stops_the_reply(
    qwen3tui_home: Path,
) -> None:
    engine = FakeEngine(hold_after=2)
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "one")
        await wait_for_thread(engine.holding)
        await send(pilot, "two")
        await pilot.press("escape")
        assert c.queued == [] and c.composer.border_subtitle == ""
        assert [m.text for m in c.conversation.query(UserMessage)] == ["one"]
        assert c.turn is not None and not c.turn.stop.is_set()  # still streaming
        await pilot.press("escape")
        await finish_turn(pilot)
        assert len(engine.calls) == 1
        assert c.store.get_session(c.session_id).messages[-1].status == "cancelled"


# ----- exact budgets -----


async def test_budget_30_gives_exactly_30(qwen3tui_home: Path) -> None:
    engine = FakeEngine()
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "/budget 30")
        assert c.settings.thinking_budget == 30 and c.controls.slider.value == 30
        await send(pilot, "/budget 3000")
        await send(pilot, "hi")
        await finish_turn(pilot)
        assert engine.calls[-1].options.thinking_budget == 3000
        assert UserSettings.load().turn.thinking_budget == 3000


# ----- confirmations come and go; errors stay -----


async def test_setting_changes_are_notifications_not_transcript_entries(
    qwen3tui_home: Path,
) -> None:
    settings = UserSettings(turn=TurnSettings(thinking=True))
    app = make_app(FakeEngine(), qwen3tui_home, settings=settings)
    posted = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        for command in (
            "/budget 2048",
            "/set temperature 0.5",
            "/no_think",
            "/think",
            "/theme qwen-light",
        ):
            await send(pilot, command)
        assert notices(app) == []
        assert [message for message, _ in posted] == [
            "Thinking budget: 2,048 tokens, from the next turn.",
            "temperature = 0.5 from the next turn.",
            "Thinking off from the next turn.",
            "Thinking on from the next turn.",
            "Theme: qwen-light",
        ]
        assert all(timeout is not None and timeout <= 5 for _, timeout in posted)  # they go
        await send(pilot, "/theme no-such-theme")
        assert len(notices(app)) == 1  # what the user must fix stays inline


# ----- the welcome view, the switch in words, the slider while thinking is off -----


async def test_an_empty_chat_welcomes_with_the_model_its_mode_and_the_keys_that_matter(
    qwen3tui_home: Path,
) -> None:
    app = make_app(FakeEngine(), qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        assert c.welcome.display
        shown = str(c.welcome.content)
        assert shown.startswith("fake/Qwen3-Fake\nhybrid: thinks or not")
        for key in ("Enter", "Ctrl+T", "Ctrl+G", "Esc", "F1"):
            assert f"\n{key} " in shown
        await send(pilot, "hi")
        assert not c.welcome.display
        await finish_turn(pilot)
        await send(pilot, "/new")
        assert c.welcome.display


async def test_no_welcome_while_the_model_loads_or_when_it_failed(qwen3tui_home: Path) -> None:
    def failing(progress: Any) -> Any:
        raise RuntimeError("no such model")

    app = make_app(None, qwen3tui_home, engine_factory=failing)
    async with app.run_test(size=SIZE) as pilot:
        c = chat(app)
        assert not c.welcome.display  # loading
        await wait_until(pilot, lambda: c.load_error is not None, what="the failure")
        assert not c.welcome.display


async def test_the_switch_says_on_or_off_in_words_and_the_slider_looks_off_with_it(
    qwen3tui_home: Path,
) -> None:
    app = make_app(FakeEngine(), qwen3tui_home, settings=UserSettings(turn=TurnSettings()))
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        assert str(c.controls.state.content) == "ON"
        assert not c.controls.has_class("-thinking-off")
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert str(c.controls.state.content) == "OFF"
        assert c.controls.has_class("-thinking-off")
        assert not c.controls.slider.disabled  # it still takes a budget for later


@pytest.mark.parametrize("theme", ["qwen-dark", "qwen-ember", "qwen-light", "qwen-phosphor"])
async def test_on_and_off_contrast_with_the_background_on_every_theme(
    qwen3tui_home: Path, theme: str
) -> None:
    app = make_app(FakeEngine(), qwen3tui_home, settings=UserSettings(theme=theme))
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        for on in (True, False):
            c.controls.switch.value = on
            await pilot.pause()
            label = c.controls.state
            background = label.background_colors[1]
            color = background + label.styles.color
            assert _contrast(color, background) >= 4.5, (theme, on)


def _contrast(a: Any, b: Any) -> float:
    """WCAG contrast ratio of two colours."""

    def luminance(c: Any) -> float:
        def channel(v: int) -> float:
            v = v / 255
            return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

        return 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b)

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


async def test_help_lists_answer_now_even_when_the_model_is_not_thinking(
    qwen3tui_home: Path,
) -> None:
    from qwen3tui.tui.screens.help import HelpScreen

    app = make_app(FakeEngine(), qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("f1")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        assert ("Ctrl+G", "Answer now — while the model thinks: stop thinking and answer") in (
            app.screen.key_rows
        )
