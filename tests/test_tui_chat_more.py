"""More of the chat screen: failures, notices, progress, copying, the palette, start-up options."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from fake_engine import FakeEngine
from tui_helpers import chat, finish_turn, make_app, ready, send, wait_until

from qwen3tui.engine.errors import ContextOverflowError
from qwen3tui.engine.events import ContextNotice
from qwen3tui.engine.info import LoadProgress
from qwen3tui.settings import UserSettings
from qwen3tui.store import Outcome, SessionStore
from qwen3tui.tui.app import EngineProgress
from qwen3tui.tui.command_palette import palette_entries
from qwen3tui.tui.screens.sessions import SessionsScreen
from qwen3tui.tui.widgets.chat_message import Notice

pytestmark = pytest.mark.anyio
SIZE = (100, 36)


def notices(app: object) -> list[str]:
    return [n.text for n in chat(app).conversation.query(Notice)]  # type: ignore[arg-type]


class FailingEngine(FakeEngine):
    def chat(self, messages, options, cancel=None, answer_now=None):  # noqa: ANN001, ANN201
        yield from list(super().chat(messages, options, cancel))[:3]  # a little thinking
        raise ContextOverflowError(
            "the conversation no longer fits in 4096 tokens.",
            "Start a /new conversation or use --context 8192.",
        )


class NoticeEngine(FakeEngine):
    def chat(self, messages, options, cancel=None, answer_now=None):  # noqa: ANN001, ANN201
        yield ContextNotice(2, "2 older messages were left out to fit the context window.")
        yield from super().chat(messages, options, cancel)


async def test_a_failed_generation_is_shown_and_saved_as_an_error(qwen3tui_home: Path) -> None:
    app = make_app(FailingEngine(), qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "hi")
        await finish_turn(pilot)
        reply = c.replies()[-1]
        assert reply.outcome is Outcome.ERROR
        meta = str(reply.meta.render())
        assert meta.startswith("failed · the conversation no longer fits in 4096 tokens.")
        assert reply.pane.title == "Thinking stopped · 3 tokens"
        saved = app.store.get_session(c.session_id).messages[-1]
        assert saved.status == "error" and "no longer fits" in (saved.error or "")
        await send(pilot, "next")  # the app keeps working
        assert len(app.engine_factory(None).calls) == 2


async def test_context_notices_appear_above_the_reply(qwen3tui_home: Path) -> None:
    app = make_app(NoticeEngine(), qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "hi")
        await finish_turn(pilot)
        children = list(c.conversation.children)
        notice = next(w for w in children if isinstance(w, Notice))
        assert notice.text == "2 older messages were left out to fit the context window."
        assert children.index(notice) == children.index(c.replies()[-1]) - 1


async def test_download_and_load_progress_are_shown_while_the_model_loads(
    qwen3tui_home: Path,
) -> None:
    go = threading.Event()

    def loading(progress) -> FakeEngine:  # noqa: ANN001
        go.wait(10)
        return FakeEngine()

    app = make_app(None, qwen3tui_home, engine_factory=loading)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        c = chat(app)
        assert "loading model…" in str(c.status.render())
        app.post_message(
            EngineProgress(LoadProgress("download", 0, 3_000_000_000, "model.safetensors"))
        )
        await pilot.pause()
        panel = c.load_panel
        assert str(panel.label.render()).startswith("model.safetensors · 0 B / 3.0 GB")
        t = time.monotonic()
        panel.show(LoadProgress("download", 0, 3_000_000_000, "model.safetensors"), now=t + 1)
        panel.show(
            LoadProgress("download", 1_500_000_000, 3_000_000_000, "model.safetensors"), now=t + 2
        )
        assert str(panel.label.render()) == "model.safetensors · 1.5 GB / 3.0 GB · 1.5 GB/s"
        assert panel.bar.percentage == pytest.approx(0.5)
        app.post_message(EngineProgress(LoadProgress("load", 3, 10)))
        await pilot.pause()
        assert str(panel.label.render()) == "Loading weights · 3 / 10 tensors"
        go.set()
        await ready(pilot)
        assert panel.display is False


async def test_copy_puts_the_last_answer_on_the_clipboard(qwen3tui_home: Path) -> None:
    app = make_app(FakeEngine(), qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "/copy")
        assert notices(app)[-1] == "No answer to copy yet."
        await send(pilot, "hi")
        await finish_turn(pilot)
        await send(pilot, "/copy")
        assert app.clipboard == "**Hello** from the fake engine."


async def test_ctrl_c_copies_the_composer_selection_instead_of_quitting(
    qwen3tui_home: Path,
) -> None:
    app = make_app(FakeEngine(), qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        c.composer.focus()
        c.composer.text = "copy these words"
        c.composer.select_all()
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert app.clipboard == "copy these words"
        assert app.screen is c  # no quit question


async def test_the_command_palette_offers_the_slash_commands(qwen3tui_home: Path) -> None:
    titles = [title for title, _, _ in palette_entries()]
    assert {"/new", "/sessions", "/retry", "/help", "/quit", "/export md", "/budget off"} <= set(
        titles
    )
    assert "/resume" not in titles  # needs an id: typed, not picked
    engine = FakeEngine()
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"no_think")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_until(
            pilot, lambda: c.controls.switch.value is False, what="the palette to run /no_think"
        )


async def test_resume_without_id_opens_the_sessions_screen(qwen3tui_home: Path) -> None:
    app = make_app(FakeEngine(), qwen3tui_home, resume="")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(
            pilot, lambda: isinstance(app.screen, SessionsScreen), what="the sessions screen"
        )


async def test_resume_with_an_unknown_id_says_so_and_starts_fresh(qwen3tui_home: Path) -> None:
    store = SessionStore.open(qwen3tui_home / "sessions.db")
    s = store.create_session("fake")
    store.add_user_message(s.id, "kept")
    app = make_app(FakeEngine(), qwen3tui_home, store=store, resume="zzzz")
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        assert "zzzz" in notices(app)[0]
        assert c.session_id is None
    app = make_app(FakeEngine(), qwen3tui_home, store=store, resume=s.id[:6])
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        assert c.session_id == s.id


async def test_continue_with_no_saved_session_starts_a_new_one(qwen3tui_home: Path) -> None:
    app = make_app(FakeEngine(), qwen3tui_home, continue_last=True)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        assert notices(app) == ["No saved session to continue yet: this is a new one."]
        assert c.session_id is None


async def test_the_view_follows_the_stream_unless_the_user_scrolls_up(qwen3tui_home: Path) -> None:
    engine = FakeEngine(answer_tokens=[f"line {i}\n\n" for i in range(80)], hold_after=40)
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "/no_think")
        await send(pilot, "long please")
        await wait_until(pilot, lambda: engine.holding.is_set(), what="half the reply")
        await pilot.pause(0.2)
        view = c.conversation
        assert view.max_scroll_y > 0 and view.scroll_y == view.max_scroll_y
        view.scroll_to(y=0, animate=False)  # the user scrolls up to read
        await pilot.pause()
        engine.release.set()
        await finish_turn(pilot)
        assert view.scroll_y == 0 < view.max_scroll_y  # not yanked back down


async def test_clear_empties_the_screen_but_keeps_the_context(qwen3tui_home: Path) -> None:
    engine = FakeEngine()
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "remember me")
        await finish_turn(pilot)
        await send(pilot, "/clear")
        assert not c.conversation.children
        await send(pilot, "again")
        await finish_turn(pilot)
        assert [m["content"] for m in engine.calls[1].messages][0] == "remember me"


async def test_tab_completes_a_partly_typed_command(qwen3tui_home: Path) -> None:
    app = make_app(FakeEngine(), qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        c.composer.focus()
        await pilot.press("slash", "r", "e", "n", "tab")
        assert c.composer.text == "/rename "
        c.composer.text = ""
        await pilot.press("slash", "n", "o", "tab")
        assert c.composer.text == "/no_think"


async def test_quitting_while_the_model_loads_does_not_wait_for_it(qwen3tui_home: Path) -> None:
    never = threading.Event()

    def stuck(progress) -> FakeEngine:  # noqa: ANN001
        never.wait(30)
        return FakeEngine()

    app = make_app(None, qwen3tui_home, engine_factory=stuck)
    started = time.monotonic()
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await pilot.press("ctrl+q")
            await pilot.press("y")
            await wait_until(pilot, lambda: app.return_code is not None, what="the exit")
        assert time.monotonic() - started < 10
    finally:
        never.set()


async def test_broken_theme_and_settings_files_are_reported_in_the_window(
    qwen3tui_home: Path,
) -> None:
    (qwen3tui_home / "themes").mkdir()
    (qwen3tui_home / "themes" / "broken.toml").write_text("name = [oops\n")
    (qwen3tui_home / "settings.toml").write_text("thinking_budget = 'lots'\n")
    app = make_app(FakeEngine(), qwen3tui_home, settings=UserSettings.load())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        shown = notices(app)
        assert any("broken.toml" in n for n in shown)
        assert any("thinking_budget" in n for n in shown)


async def test_a_full_disk_shows_a_banner_and_everything_is_saved_once_space_returns(
    qwen3tui_home: Path,
) -> None:
    class FlakyDisk(SessionStore):
        full = True

        def _transaction(self, fn):  # noqa: ANN001, ANN202
            if self.full:
                raise sqlite3.OperationalError("database or disk is full")
            return super()._transaction(fn)

    store = FlakyDisk.open(qwen3tui_home / "sessions.db")
    app = make_app(FakeEngine(), qwen3tui_home, store=store)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "hi")
        await wait_until(pilot, lambda: c.turn is None, what="the reply to finish")
        assert c.replies()[-1].answer_text == "**Hello** from the fake engine."
        await wait_until(pilot, lambda: c.save_banner.display, what="the not-saving banner")
        assert str(c.save_banner.render()) == (
            "not saving: the disk is full — your conversation is kept in memory, /export to keep it"
        )
        assert store.list_sessions() == []  # nothing claimed as saved
        store.full = False
        await wait_until(pilot, c.saver.idle, timeout=15, what="the held writes to reach disk")
        await wait_until(pilot, lambda: not c.save_banner.display, what="the banner to go")
        saved = store.get_session(c.session_id).messages
        assert [(m.role, m.content) for m in saved] == [
            ("user", "hi"),
            ("assistant", "**Hello** from the fake engine."),
        ]
        assert notices(app)[-1] == "Saving again: everything kept in memory is now on disk."
