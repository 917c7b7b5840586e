"""Edit and branch in the chat, driven with Pilot: /retry and /edit keep what they replace as
another version, `‹ 2/2 ›` shows it, keys and clicks switch, and the next prompt follows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fake_engine import FakeEngine
from tui_helpers import chat, finish_turn, make_app, ready, send, wait_until

from qwen3tui.store import SessionStore
from qwen3tui.tui.branches import message_widgets
from qwen3tui.tui.widgets.chat_message import AssistantMessage, Notice, UserMessage

pytestmark = pytest.mark.anyio

SIZE = (100, 36)


def shown(app: Any) -> list[tuple[str, str]]:
    """The branch on screen: (role, text) per message."""
    return [
        ("user", w.text) if isinstance(w, UserMessage) else ("assistant", w.answer_text)
        for w in message_widgets(chat(app))
    ]


def labels(app: Any) -> list[tuple[int, int]]:
    return [w.branch for w in message_widgets(chat(app))]


def notices(app: Any) -> list[str]:
    return [n.text for n in chat(app).conversation.query(Notice)]


def saved(app: Any) -> list[tuple[str, str]]:
    c = chat(app)
    assert c.session_id is not None
    return [(m.role, m.content) for m in c.store.get_session(c.session_id).messages]


async def settle(pilot: Any) -> None:
    await pilot.pause()
    await pilot.pause()


async def one_turn_then_retry(pilot: Any, engine: FakeEngine) -> None:
    await send(pilot, "first")
    await finish_turn(pilot)
    engine.answer_tokens = ["Another", " answer"]
    await send(pilot, "/retry")
    await finish_turn(pilot)


async def test_retry_keeps_the_old_reply_as_another_version(qwen3tui_home: Path) -> None:
    engine = FakeEngine()
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await one_turn_then_retry(pilot, engine)
        assert shown(app) == [("user", "first"), ("assistant", "Another answer")]
        assert labels(app) == [(1, 1), (2, 2)]
        reply = c.replies()[-1]
        assert reply.branch_label.display and "‹ 2/2 ›" in str(reply.branch_label.render())
        assert saved(app) == [("user", "first"), ("assistant", "Another answer")]
        tree = c.store.get_tree(c.session_id)
        assert [m.content for m in tree.messages] == [
            "first",
            "**Hello** from the fake engine.",
            "Another answer",
        ]


async def test_switching_back_shows_the_old_reply_and_the_next_prompt_follows_it(
    qwen3tui_home: Path,
) -> None:
    engine = FakeEngine()
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await one_turn_then_retry(pilot, engine)
        await pilot.press("alt+left")
        await settle(pilot)
        assert shown(app) == [("user", "first"), ("assistant", "**Hello** from the fake engine.")]
        assert labels(app)[1] == (1, 2)
        await pilot.press("alt+left")  # already the first: said, nothing changes
        await settle(pilot)
        assert shown(app)[1] == ("assistant", "**Hello** from the fake engine.")
        engine.answer_tokens = ["Third"]
        await send(pilot, "second")
        await finish_turn(pilot)
        assert engine.calls[-1].messages == [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "**Hello** from the fake engine."},
            {"role": "user", "content": "second"},
        ]
        assert saved(app)[1:] == [
            ("assistant", "**Hello** from the fake engine."),
            ("user", "second"),
            ("assistant", "Third"),
        ]
        # Forward again: the other version, with nothing after it.
        await pilot.press("alt+right")
        await settle(pilot)
        assert shown(app) == [("user", "first"), ("assistant", "Another answer")]
        assert c.history[-1] == {"role": "assistant", "content": "Another answer"}


async def test_a_click_on_an_arrow_of_the_label_switches(qwen3tui_home: Path) -> None:
    engine = FakeEngine()
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await one_turn_then_retry(pilot, engine)
        await settle(pilot)
        label = c.replies()[-1].branch_label
        padding = label.content_region.x - label.region.x
        await pilot.click(label, offset=(padding, 0))  # on "‹"
        await settle(pilot)
        assert shown(app)[1] == ("assistant", "**Hello** from the fake engine.")
        label = c.replies()[-1].branch_label
        await pilot.click(label, offset=(padding + len("‹ 1/2 ›") - 1, 0))
        await settle(pilot)
        assert shown(app)[1] == ("assistant", "Another answer")


async def test_edit_sends_a_new_version_beside_the_original(qwen3tui_home: Path) -> None:
    engine = FakeEngine()
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "first")
        await finish_turn(pilot)
        await send(pilot, "second")
        await finish_turn(pilot)
        await send(pilot, "/edit 1")
        assert c.composer.text == "first" and c.editing is not None
        assert "editing message 1" in str(c.composer.border_title)
        engine.answer_tokens = ["Edited", " reply"]
        await send(pilot, "first, edited")
        await finish_turn(pilot)
        assert shown(app) == [("user", "first, edited"), ("assistant", "Edited reply")]
        assert labels(app)[0] == (2, 2) and c.editing is None
        assert engine.calls[-1].messages == [{"role": "user", "content": "first, edited"}]
        assert not c.welcome.display  # an edited first message is a conversation still
        # The original and what followed it are one switch away.
        await pilot.press("alt+left")
        await settle(pilot)
        assert [text for _, text in shown(app)][::2] == ["first", "second"]
        assert labels(app)[0] == (1, 2)


async def test_ctrl_up_edits_the_last_message_and_esc_cancels(qwen3tui_home: Path) -> None:
    engine = FakeEngine()
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "only question")
        await finish_turn(pilot)
        await pilot.press("ctrl+up")
        assert c.composer.text == "only question" and c.composer.has_class("-editing")
        await pilot.press("escape")
        assert c.editing is None and c.composer.text == "" and not c.composer.border_title
        assert not c.composer.has_class("-editing")
        await send(pilot, "a plain new message")  # not an edit any more
        await finish_turn(pilot)
        assert [text for _, text in shown(app)][::2] == ["only question", "a plain new message"]


async def test_switching_is_refused_while_a_reply_streams_and_without_versions(
    qwen3tui_home: Path,
) -> None:
    engine = FakeEngine(hold_after=2)
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "/branch prev")
        assert notices(app)[-1].startswith("This conversation has no other versions")
        await send(pilot, "hi")
        await wait_until(pilot, engine.holding.is_set, what="the reply to hold")
        await pilot.press("alt+left")
        await pilot.pause()
        assert notices(app)[-1] == "Stop the reply first (Esc), then switch to another version."
        engine.release.set()
        await finish_turn(pilot)


async def test_the_branch_shown_is_the_one_saved_and_reopened(qwen3tui_home: Path) -> None:
    engine = FakeEngine()
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await one_turn_then_retry(pilot, engine)
        await pilot.press("alt+left")
        await settle(pilot)
        await wait_until(pilot, c.saver.idle, what="the switch to be saved")
        session_id = c.session_id
    with SessionStore.open(qwen3tui_home / "sessions.db") as store:
        messages = store.get_session(session_id).messages
        assert [m.content for m in messages] == ["first", "**Hello** from the fake engine."]
        assert (messages[1].sibling_position, messages[1].sibling_count) == (1, 2)
    app = make_app(FakeEngine(), qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        c.open_session(session_id)
        await settle(pilot)
        assert shown(app)[1] == ("assistant", "**Hello** from the fake engine.")
        assert isinstance(message_widgets(c)[1], AssistantMessage)
        assert labels(app) == [(1, 1), (1, 2)]


async def test_retry_after_clear_shows_the_saved_branch_and_keeps_the_old_reply(
    qwen3tui_home: Path,
) -> None:
    engine = FakeEngine()
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "first")
        await finish_turn(pilot)
        await send(pilot, "/clear")
        await settle(pilot)
        engine.answer_tokens = ["Again"]
        await send(pilot, "/retry")
        await finish_turn(pilot)
        assert shown(app) == [("user", "first"), ("assistant", "Again")]
        assert labels(app)[1] == (2, 2)
        assert engine.calls[-1].messages == [{"role": "user", "content": "first"}]


async def test_edit_never_replaces_what_is_being_typed_and_esc_keeps_the_edit_one_up_away(
    qwen3tui_home: Path,
) -> None:
    engine = FakeEngine()
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "first")
        await finish_turn(pilot)
        c.composer.text = "half a thought"
        await pilot.press("ctrl+up")
        assert c.editing is None and c.composer.text == "half a thought"
        assert notices(app)[-1] == "Send or clear what is in the composer first, then edit."
        c.composer.text = ""
        await pilot.press("ctrl+up")
        c.composer.text = "first, reworded"
        await pilot.press("escape")
        assert c.editing is None and c.composer.text == ""
        await pilot.press("up")
        assert c.composer.text == "first, reworded"


async def test_an_edited_messages_label_is_on_its_last_line_and_its_arrows_switch(
    qwen3tui_home: Path,
) -> None:
    engine = FakeEngine()
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "first")
        await finish_turn(pilot)
        await send(pilot, "/edit")
        await send(pilot, "first, edited")
        await finish_turn(pilot)
        user = message_widgets(c)[0]
        assert str(user.render()).splitlines()[-1].strip() == "‹ 2/2 ›"
        x = user.content_region.x - user.region.x
        y = user.content_region.y - user.region.y + user.content_region.height - 1
        await pilot.click(user, offset=(x, y))
        await settle(pilot)
        assert shown(app)[0] == ("user", "first") and labels(app)[0] == (1, 2)
        await pilot.click(message_widgets(c)[0], offset=(x, 0))  # the text, not the label
        await settle(pilot)
        assert shown(app)[0] == ("user", "first")


async def test_a_search_hit_in_another_version_opens_that_version(qwen3tui_home: Path) -> None:
    engine = FakeEngine(answer_tokens=["Zanzibar", " is", " an", " island"])
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await one_turn_then_retry(pilot, engine)  # the Zanzibar reply is now the other version
        session_id = c.session_id
        await wait_until(pilot, c.saver.idle, what="the session to be saved")
        await send(pilot, "/new")
        await settle(pilot)
        assert c.session_id is None
        await pilot.press("ctrl+o")
        await wait_until(
            pilot,
            lambda: type(app.screen).__name__ == "SessionsScreen" and app.screen.up_to_date,
            what="the sessions screen",
        )
        for key in "zanzi":
            await pilot.press(key)
        await wait_until(
            pilot,
            lambda: app.screen.up_to_date and app.screen.hit_message(session_id) is not None,
            what="the search results",
        )
        await pilot.press("enter")
        await wait_until(pilot, lambda: c.session_id == session_id, what="the session to open")
        assert shown(app) == [("user", "first"), ("assistant", "Zanzibar is an island")]
        assert labels(app)[1] == (1, 2)
        assert c.history[-1] == {"role": "assistant", "content": "Zanzibar is an island"}
        await wait_until(pilot, c.saver.idle, what="the switch to be saved")
        assert saved(app) == [("user", "first"), ("assistant", "Zanzibar is an island")]
