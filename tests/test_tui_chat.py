"""The chat screen, driven with Pilot against a scripted engine and a real session store."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from fake_engine import FakeEngine
from tui_helpers import chat, finish_turn, make_app, ready, send, wait_for_thread, wait_until

from qwen3tui.engine.errors import ModelNotFoundError
from qwen3tui.settings import TurnSettings, UserSettings
from qwen3tui.store import Outcome, SessionStore
from qwen3tui.tui.screens.confirm import ConfirmScreen
from qwen3tui.tui.screens.help import HelpScreen
from qwen3tui.tui.screens.sessions import SessionsScreen
from qwen3tui.tui.widgets.chat_message import Notice, UserMessage

pytestmark = pytest.mark.anyio

SIZE = (100, 36)


def notices(app: object) -> list[str]:
    return [n.text for n in chat(app).conversation.query(Notice)]  # type: ignore[arg-type]


def shown(widget: object) -> list[str]:
    """The Markdown source of the blocks actually mounted on screen under `widget`."""
    return [block.source for block in widget.query("MarkdownParagraph")]  # type: ignore[attr-defined]


def saved(app: object) -> list:  # the current session's saved messages
    c = chat(app)  # type: ignore[arg-type]
    assert c.saver.wait_idle(10), "the saver did not write everything"
    return c.store.get_session(c.session_id).messages


async def test_a_thinking_reply_streams_into_an_open_pane_that_collapses_when_the_answer_starts(
    qwen3tui_home: Path,
) -> None:
    engine = FakeEngine(hold_after=3)
    app = make_app(
        engine, qwen3tui_home, settings=UserSettings(turn=TurnSettings(thinking_budget=1024))
    )
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "why is the sky blue?")
        await wait_for_thread(engine.holding)
        reply = c.replies()[-1]
        await wait_until(
            pilot, lambda: reply.pane.title == "Thinking… 3 / 1024", what="the live title"
        )
        assert reply.pane.collapsed is False
        assert reply.thinking_text == "Let me think"
        await wait_until(
            pilot, lambda: shown(reply.pane) == ["Let me think"], what="the thinking text on screen"
        )
        engine.release.set()
        await finish_turn(pilot)
        assert reply.pane.collapsed is True
        assert reply.pane.title == "Thought for 4.2 s · 6 tokens"
        assert reply.answer_text == "**Hello** from the fake engine."
        assert shown(reply.answer) == ["**Hello** from the fake engine."]
        assert engine.calls[0].options.thinking is True
        assert engine.calls[0].options.thinking_budget == 1024
        user, answer = saved(app)
        assert (user.role, user.content) == ("user", "why is the sky blue?")
        assert (answer.status, answer.content, answer.thinking) == (
            "complete",
            "**Hello** from the fake engine.",
            "Let me think about that.",
        )
        assert "42.0 tok/s" in str(c.status.render())


async def test_a_reply_without_thinking_has_no_pane(qwen3tui_home: Path) -> None:
    engine = FakeEngine()
    app = make_app(engine, qwen3tui_home, settings=UserSettings(turn=TurnSettings(thinking=False)))
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        assert c.controls.switch.value is False
        await send(pilot, "hi")
        await finish_turn(pilot)
        assert c.replies()[-1].pane is None
        assert not c.replies()[-1].query("Collapsible")
        assert engine.calls[0].options.thinking is False
        assert engine.calls[0].options.thinking_budget is None


async def test_think_and_no_think_commands_flip_the_switch_and_the_next_prompt(
    qwen3tui_home: Path,
) -> None:
    engine = FakeEngine()
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "/no_think")
        assert c.controls.switch.value is False
        await send(pilot, "one")
        await finish_turn(pilot)
        await send(pilot, "/think")
        assert c.controls.switch.value is True
        await send(pilot, "two")
        await finish_turn(pilot)
        assert [call.options.thinking for call in engine.calls] == [False, True]
        assert c.composer.text == ""


async def test_a_soft_switch_ending_a_message_applies_to_it_and_moves_the_switch(
    qwen3tui_home: Path,
) -> None:
    engine = FakeEngine()
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        assert c.controls.switch.value is True
        await send(pilot, "explain x /no_think")
        await finish_turn(pilot)
        first = engine.calls[0]
        assert first.options.thinking is False
        assert first.messages[-1]["content"] == "explain x /no_think"  # Qwen sees the switch
        assert c.controls.switch.value is False
        await send(pilot, "and y")  # the switch and the model keep agreeing
        await finish_turn(pilot)
        assert engine.calls[1].options.thinking is False


async def test_the_switch_and_the_budget_slider_set_the_next_turn(qwen3tui_home: Path) -> None:
    engine = FakeEngine()
    app = make_app(
        engine, qwen3tui_home, settings=UserSettings(turn=TurnSettings(thinking_budget=4096))
    )
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        c.controls.slider.focus()
        await pilot.press("right")  # one step up: 4096 -> 6144
        await pilot.pause()
        assert c.controls.slider.value == 6144
        await send(pilot, "one")
        await finish_turn(pilot)
        await send(pilot, "/budget off")
        assert c.controls.slider.value is None
        await send(pilot, "two")
        await finish_turn(pilot)
        await pilot.click("#thinking-switch")
        await pilot.pause()
        await send(pilot, "three")
        await finish_turn(pilot)
        assert [(k.options.thinking, k.options.thinking_budget) for k in engine.calls] == [
            (True, 6144),
            (True, None),
            (False, None),
        ]
        # Saved with the session and as the user's defaults.
        assert (c.saver.wait_idle(10) and c.store.get_session(c.session_id).settings)[
            "thinking"
        ] is False
        assert UserSettings.load().turn.thinking_budget is None


async def test_escape_stops_mid_stream_and_the_partial_reply_is_saved_as_cancelled(
    qwen3tui_home: Path,
) -> None:
    engine = FakeEngine(hold_after=8)  # all 6 thinking tokens and 2 of the answer
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "tell me")
        await wait_for_thread(engine.holding)
        await wait_until(
            pilot,
            lambda: c.replies()[-1].answer_text == "**Hello** from",
            what="the partial answer on screen",
        )
        await pilot.press("escape")
        await finish_turn(pilot)
        reply = c.replies()[-1]
        assert reply.outcome is Outcome.CANCELLED
        assert reply.answer_text == "**Hello** from"
        assert "stopped" in str(reply.meta.render())
        assert reply.has_class("-cancelled")
        answer = saved(app)[-1]
        assert (answer.status, answer.content) == ("cancelled", "**Hello** from")


async def test_retry_regenerates_the_last_reply_in_place(qwen3tui_home: Path) -> None:
    engine = FakeEngine()
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "first")
        await finish_turn(pilot)
        engine.answer_tokens = ["Another", " answer"]
        await send(pilot, "/retry")
        await finish_turn(pilot)
        assert len(engine.calls) == 2
        assert engine.calls[1].messages == engine.calls[0].messages
        assert [r.answer_text for r in c.replies()] == ["Another answer"]
        assert len(c.conversation.query(UserMessage)) == 1
        assert [(m.role, m.content) for m in saved(app)] == [
            ("user", "first"),
            ("assistant", "Another answer"),
        ]


async def test_export_writes_markdown_and_json(qwen3tui_home: Path, tmp_path: Path) -> None:
    app = make_app(FakeEngine(), qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "/export md")
        assert notices(app)[-1].startswith("Nothing to export yet")
        await send(pilot, "export me")
        await finish_turn(pilot)
        await send(pilot, f"/export md {tmp_path / 'chat.md'}")
        await send(pilot, f"/export json {tmp_path / 'chat.json'}")
        markdown = (tmp_path / "chat.md").read_text()
        assert "export me" in markdown and "Hello" in markdown
        data = json.loads((tmp_path / "chat.json").read_text())
        assert "export me" in json.dumps(data)
        assert notices(app)[-1] == f"Exported to {tmp_path / 'chat.json'}"


async def test_an_unknown_command_is_answered_inline_and_the_composer_keeps_the_text(
    qwen3tui_home: Path,
) -> None:
    engine = FakeEngine()
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "/frobnicate now")
        assert notices(app)[-1] == "unknown command /frobnicate -- /help lists them"
        assert c.composer.text == "/frobnicate now"
        await send(pilot, "/set top_p 7")
        assert notices(app)[-1] == "/set top_p = 7 is not allowed: use a number > 0 and ≤ 1"
        assert c.composer.text == "/set top_p 7"
        assert engine.calls == []
        await send(pilot, "//etc/hosts is a file")  # a doubled slash sends a message
        await finish_turn(pilot)
        assert engine.calls[0].messages[-1]["content"] == "/etc/hosts is a file"


async def test_set_and_system_change_what_the_next_turn_sends(qwen3tui_home: Path) -> None:
    engine = FakeEngine()
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "/set temperature 0.2")
        await send(pilot, "/set max_tokens 64")
        await send(pilot, "/system You are terse.")
        await send(pilot, "hi")
        await finish_turn(pilot)
        call = engine.calls[0]
        assert call.options.sampling.temperature == 0.2
        assert call.options.max_new_tokens == 64
        # The reply records the sampling it ran with: the override and the mode's defaults.
        recorded = saved(app)[-1].sampling
        assert recorded["temperature"] == 0.2
        assert (recorded["top_p"], recorded["top_k"]) == (0.95, 20)  # thinking-mode defaults
        assert call.messages[0] == {"role": "system", "content": "You are terse."}
        assert (
            c.saver.wait_idle(10) and c.store.get_session(c.session_id).system_prompt
        ) == "You are terse."
        await send(pilot, "/system")
        assert notices(app)[-1] == "System prompt: You are terse."


async def test_the_sessions_screen_opens_from_the_app_and_opens_the_chosen_session(
    qwen3tui_home: Path,
) -> None:
    store = SessionStore.open(qwen3tui_home / "sessions.db")
    old = store.create_session("fake", settings={"thinking": False})
    store.add_user_message(old.id, "an older question")
    app = make_app(FakeEngine(), qwen3tui_home, store=store)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await pilot.press("ctrl+o")
        await wait_until(
            pilot, lambda: isinstance(app.screen, SessionsScreen), what="the sessions screen"
        )
        app.screen.dismiss(old.id)
        await wait_until(pilot, lambda: c.session_id == old.id, what="the session to open")
        assert [u.text for u in c.conversation.query(UserMessage)] == ["an older question"]
        assert c.controls.switch.value is False
        await send(pilot, "/sessions")
        await wait_until(
            pilot,
            lambda: isinstance(app.screen, SessionsScreen),
            what="the sessions screen from /sessions",
        )


async def test_continue_restores_messages_settings_and_the_engine_conversation(
    qwen3tui_home: Path,
) -> None:
    store = SessionStore.open(qwen3tui_home / "sessions.db")
    s = store.create_session("fake", settings={"thinking": True, "thinking_budget": 2048})
    store.add_user_message(s.id, "earlier")
    reply = store.begin_reply(s.id, thinking_enabled=True, budget=2048, sampling={})
    store.finish_reply(
        reply,
        thinking="hmm",
        answer="earlier answer",
        outcome=Outcome.COMPLETE,
        usage={"thinking_tokens": 7, "answer_tokens": 2},
        timings={"thinking_s": 1.5, "decode_tok_s": 10.0},
    )
    engine = FakeEngine()
    app = make_app(engine, qwen3tui_home, store=store, continue_last=True)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        reply = c.replies()[0]
        assert reply.pane.collapsed is True
        assert reply.pane.title == "Thought for 1.5 s · 7 tokens"
        assert reply.answer_text == "earlier answer"
        assert c.controls.slider.value == 2048
        # The prompt size is counted off the UI thread (the fake counts words + 4 per message).
        await wait_until(
            pilot,
            lambda: "ctx 11 / 4,096" in str(c.status.render()),
            what="the restored context size",
        )
        await send(pilot, "and now?")
        await finish_turn(pilot)
        assert engine.calls[0].messages == [
            {"role": "user", "content": "earlier"},
            {"role": "assistant", "content": "earlier answer"},
            {"role": "user", "content": "and now?"},
        ]
        assert engine.calls[0].options.thinking_budget == 2048
        assert len(saved(app)) == 4
        c.composer.focus()
        await pilot.press("up", "up")
        assert c.composer.text == "earlier"  # the restored prompts are in the history


async def test_a_message_typed_while_the_model_loads_is_sent_when_it_is_ready(
    qwen3tui_home: Path,
) -> None:
    engine = FakeEngine()
    loaded = threading.Event()

    def slow_factory(progress: object) -> FakeEngine:
        loaded.wait(10)
        return engine

    app = make_app(engine, qwen3tui_home, engine_factory=slow_factory)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        c = chat(app)
        await send(pilot, "early bird")
        assert [u.text for u in c.conversation.query(UserMessage)] == ["early bird"]
        assert engine.calls == []
        # Already on disk: quitting before the model is ready would lose nothing.
        assert [(m.role, m.content) for m in saved(app)] == [("user", "early bird")]
        loaded.set()
        await wait_until(pilot, lambda: engine.calls, what="the queued message to be sent")
        await finish_turn(pilot)
        assert engine.calls[0].messages == [{"role": "user", "content": "early bird"}]
        assert len(c.conversation.query(UserMessage)) == 1  # not shown twice
        assert [m.role for m in saved(app)] == ["user", "assistant"]  # nor saved twice


async def test_a_model_that_cannot_load_is_explained_in_the_window(qwen3tui_home: Path) -> None:
    def failing(progress: object) -> None:
        raise ModelNotFoundError("no Qwen3 checkpoint at ./nope.", "Pass --model a hub id.")

    app = make_app(None, qwen3tui_home, engine_factory=failing)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: chat(app).load_error is not None, what="the load error")
        await pilot.pause()
        assert notices(app)[0] == (
            "Could not load the model: no Qwen3 checkpoint at ./nope. Pass --model a hub id."
        )
        assert "qwen3tui sessions list" in notices(app)[1] and "`" not in notices(app)[1]
        await send(pilot, "hello?")
        assert "No model is loaded" in notices(app)[-1]
        assert chat(app).composer.text == "hello?"


async def test_ctrl_c_asks_before_quitting_and_quitting_mid_reply_saves_it(
    qwen3tui_home: Path,
) -> None:
    engine = FakeEngine(hold_after=2)
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "long one")
        await wait_for_thread(engine.holding)
        session_id = c.session_id
        await pilot.press("ctrl+c")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("n")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen) and c.turn is not None
        await pilot.press("ctrl+c")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("y")
        await wait_until(pilot, lambda: app.return_code is not None, what="the app to exit")
    answer = app.store.get_session(session_id).messages[-1]
    assert (answer.role, answer.status, answer.thinking) == ("assistant", "cancelled", "Let me")


async def test_up_in_an_empty_composer_recalls_earlier_prompts(qwen3tui_home: Path) -> None:
    app = make_app(FakeEngine(), qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        for prompt in ("first", "second"):
            await send(pilot, prompt)
            await finish_turn(pilot)
        c.composer.focus()
        await pilot.press("up")
        assert c.composer.text == "second"
        await pilot.press("up")
        assert c.composer.text == "first"
        await pilot.press("down", "down")
        assert c.composer.text == ""


async def test_enter_sends_and_ctrl_j_adds_a_line(qwen3tui_home: Path) -> None:
    engine = FakeEngine()
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        c.composer.focus()
        await pilot.press("a", "ctrl+j", "b")
        assert c.composer.text == "a\nb"
        await pilot.press("enter")
        await finish_turn(pilot)
        assert engine.calls[0].messages[-1]["content"] == "a\nb"


async def test_slash_commands_are_suggested_while_typing(qwen3tui_home: Path) -> None:
    app = make_app(FakeEngine(), qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        c.composer.focus()
        await pilot.press("slash", "r", "e")
        await pilot.pause()
        assert c.suggestions.display is True
        shown = str(c.suggestions.render())
        assert "/resume ID" in shown and "/retry" in shown and "/think" not in shown
        await pilot.press("backspace", "backspace", "backspace")
        await pilot.pause()
        assert c.suggestions.display is False


async def test_help_and_theme_commands(qwen3tui_home: Path) -> None:
    app = make_app(FakeEngine(), qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "/theme qwen-light")
        assert app.theme == "qwen-light"
        assert UserSettings.load().theme == "qwen-light"
        await send(pilot, "/theme nope")
        assert notices(app)[-1].startswith("No theme 'nope'; available:")
        await send(pilot, "/theme")  # alone: the list, the current one marked
        listed = notices(app)[-1]
        assert listed.startswith("Themes: ") and "qwen-light (current)" in listed
        assert "qwen-phosphor" in listed and app.theme == "qwen-light"
        await send(pilot, "/help")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")


async def test_new_rename_and_delete(qwen3tui_home: Path) -> None:
    app = make_app(FakeEngine(), qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "keep me")
        await finish_turn(pilot)
        first = c.session_id
        await send(pilot, "/rename Kept")
        assert app.store.get_session(first).title == "Kept"
        await send(pilot, "/new")
        assert c.session_id is None and not c.replies()
        await send(pilot, "delete me")
        await finish_turn(pilot)
        doomed = c.session_id
        await send(pilot, "/delete")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("y")
        await wait_until(pilot, lambda: c.session_id is None, what="the deletion")
        assert [s.id for s in app.store.list_sessions()] == [first]
        assert doomed != first


def test_the_ui_never_imports_torch() -> None:
    code = (
        "import sys, qwen3tui.tui, qwen3tui.tui.app, qwen3tui.tui.chat_screen; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_a_think_block_closed_at_once_leaves_no_empty_pane(qwen3tui_home: Path) -> None:
    """The model may close its think block at once (e.g. /no_think in the system prompt)."""
    engine = FakeEngine(thinking_tokens=["\n"])
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "hi")
        await finish_turn(pilot)
        reply = c.replies()[-1]
        assert reply.pane is not None and reply.pane.display is False
        assert reply.answer_text == "**Hello** from the fake engine."


async def test_a_thinking_only_model_locks_the_switch_on_and_keeps_the_budget(
    qwen3tui_home: Path,
) -> None:
    engine = FakeEngine(thinking_mode="thinking")
    settings = UserSettings(turn=TurnSettings(thinking=False, thinking_budget=1024))
    app = make_app(engine, qwen3tui_home, settings=settings)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        assert c.controls.switch.value is True and c.controls.switch.disabled
        assert not c.controls.slider.disabled
        assert "thinking-only" in str(c.status.render())
        await send(pilot, "/no_think")
        assert notices(app)[-1].startswith("This model always thinks (thinking-only)")
        assert c.settings.thinking is False  # the user's own choice is kept for other models
        await send(pilot, "hello")
        await finish_turn(pilot)
        assert c.replies()[-1].pane is not None  # it thought, within the budget
        assert engine.calls[-1].options.thinking_budget == 1024
        assert saved(app)[-1].thinking_enabled is True


async def test_an_instruct_only_model_disables_thinking_and_drops_the_soft_switch(
    qwen3tui_home: Path,
) -> None:
    engine = FakeEngine(thinking_mode="instruct")
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        assert c.controls.switch.value is False and c.controls.switch.disabled
        assert c.controls.slider.disabled
        await pilot.press("ctrl+t")
        assert notices(app)[-1] == (
            "This model has no thinking mode (instruct-only); it always answers directly."
        )
        await send(pilot, "explain tides /think")
        await finish_turn(pilot)
        assert engine.calls[-1].messages[-1]["content"] == "explain tides"  # not sent
        assert notices(app)[-1].startswith("This model has no thinking mode")
        assert c.replies()[-1].pane is None
        assert saved(app)[-1].thinking_enabled is False


async def test_export_asks_before_replacing_a_file_and_never_writes_half_of_one(
    qwen3tui_home: Path, tmp_path: Path
) -> None:
    target = tmp_path / "chat.md"
    target.write_text("my notes\n")
    app = make_app(FakeEngine(), qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "export me")
        await finish_turn(pilot)
        await send(pilot, f"/export md {target}")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="a question")
        await pilot.press("n")
        await pilot.pause()
        assert target.read_text() == "my notes\n"
        await send(pilot, f"/export md {target}")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="a question")
        await pilot.press("y")
        await wait_until(pilot, lambda: "export me" in target.read_text(), what="the export")
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


async def test_export_while_nothing_can_be_saved_writes_what_is_on_screen(
    qwen3tui_home: Path, tmp_path: Path
) -> None:
    class FullDisk(SessionStore):
        def _transaction(self, fn):  # noqa: ANN001, ANN202
            raise sqlite3.OperationalError("database or disk is full")

    store = FullDisk.open(qwen3tui_home / "sessions.db")
    app = make_app(FakeEngine(), qwen3tui_home, store=store)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "keep this")
        await wait_until(pilot, lambda: c.turn is None and c.save_banner.display, what="banner")
        await send(pilot, f"/export md {tmp_path / 'rescued.md'}")
        rescued = (tmp_path / "rescued.md").read_text()
        assert "keep this" in rescued and "**Hello** from the fake engine." in rescued


async def test_keys_typed_before_the_app_takes_a_sent_message_are_kept(qwen3tui_home: Path) -> None:
    """On a busy machine the next keystrokes can land before the Submitted message is handled:
    taking the sent text out must leave them in the composer."""
    app = make_app(FakeEngine(), qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        c.composer.text = "/help" + "/file notes.txt"  # sent "/help", then typed on
        c.composer.clear_sent("/help")
        assert c.composer.text == "/file notes.txt"
        c.composer.clear_sent("/file notes.txt")
        assert c.composer.text == ""
        await pilot.pause()
