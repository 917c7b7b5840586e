"""Stream updates: each applies its text where it is made (so one update is one re-layout),
updates held back and merged still show every token by the reply's end, and a reply stopped
mid-stream keeps on screen, and in the store, everything it streamed."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_engine import FakeEngine
from test_tui_streaming_markdown import Host  # a bare app holding one StreamingMarkdown
from textual.widgets import ProgressBar
from textual.widgets.markdown import MarkdownBlock
from tui_helpers import finish_turn, make_app, ready, send, wait_for_thread, wait_until

from qwen3tui.engine.info import LoadProgress
from qwen3tui.settings import TurnSettings, UserSettings
from qwen3tui.store import Outcome, SessionStore
from qwen3tui.tui.app import EngineProgress
from qwen3tui.tui.generation_worker import UpdatePacer
from qwen3tui.tui.widgets.load_progress import LoadProgressPanel
from qwen3tui.tui.widgets.streaming_markdown import StreamingMarkdown

pytestmark = pytest.mark.anyio

SETTINGS = UserSettings(
    thinking_display="expanded", turn=TurnSettings(thinking=True, thinking_budget=None)
)
# Long enough for several paragraphs; every token distinct, so a lost one shows.
THINKING = [f"Step {i} is **checked**." + ("\n\n" if i % 5 == 4 else " ") for i in range(40)]
ANSWER = [f"Point {i} " for i in range(30)]


def shown(doc: StreamingMarkdown) -> list[str]:
    """The text of every Markdown block the document has on screen, in order."""
    return [block._content.plain for block in doc.query(MarkdownBlock)]


def rendered(markdown: str) -> list[str]:
    """What the blocks show for `markdown`: its paragraphs, without the emphasis marks."""
    return [p.strip().replace("**", "") for p in markdown.split("\n\n") if p.strip()]


async def test_an_appended_text_is_in_the_blocks_as_soon_as_the_append_returns() -> None:
    app = Host()
    async with app.run_test() as pilot:
        await pilot.pause()
        await app.doc.append("First **paragraph**")
        assert shown(app.doc) == ["First paragraph"]  # no pause: nothing left for later
        await app.doc.append(" grows.\n\nSecond")
        assert shown(app.doc) == ["First paragraph grows.", "Second"]
        await app.doc.finish()
        assert shown(app.doc) == ["First paragraph grows.", "Second"]


def frozen_pacer() -> UpdatePacer:
    """One stream update, then none until the reply ends: everything else is merged."""
    return UpdatePacer(min_interval=1000.0, max_interval=1000.0)


async def test_updates_merged_while_held_back_show_every_token_by_the_end(
    qwen3tui_home: Path,
) -> None:
    engine = FakeEngine(thinking_tokens=list(THINKING), answer_tokens=list(ANSWER), hold_after=3)
    app = make_app(engine, qwen3tui_home, settings=SETTINGS)
    async with app.run_test(size=(100, 40)) as pilot:
        c = await ready(pilot)
        c.pacer = frozen_pacer()
        await send(pilot, "think it through")
        await wait_for_thread(engine.holding)
        reply = c.replies()[-1]
        assert reply.pane is not None
        await wait_until(pilot, lambda: shown(reply.pane.body), what="the first update")
        assert len(reply.pane.body.source) < len("".join(THINKING))  # the rest is held back
        engine.release.set()
        await finish_turn(pilot)
        assert reply.thinking_text == "".join(THINKING)
        assert shown(reply.pane.body) == rendered("".join(THINKING))
        assert reply.answer_text == "".join(ANSWER)
        assert shown(reply.answer) == rendered("".join(ANSWER))


async def test_a_reply_stopped_mid_stream_keeps_every_token_it_streamed(
    qwen3tui_home: Path,
) -> None:
    engine = FakeEngine(thinking_tokens=list(THINKING), answer_tokens=list(ANSWER), hold_after=23)
    store = SessionStore.open(qwen3tui_home / "sessions.db")
    app = make_app(engine, qwen3tui_home, store=store, settings=SETTINGS)
    async with app.run_test(size=(100, 40)) as pilot:
        c = await ready(pilot)
        await send(pilot, "think it through")
        reply = c.replies()[-1]
        assert reply.pane is not None
        await wait_until(pilot, lambda: shown(reply.pane.body), what="the first update")
        c.pacer = frozen_pacer()  # whatever streams from here waits for the end
        await wait_for_thread(engine.holding)
        await pilot.press("escape")  # stop while 23 tokens are out, some not shown yet
        await finish_turn(pilot)
        streamed = "".join(THINKING[:23])
        assert reply.outcome is Outcome.CANCELLED
        assert reply.thinking_text == streamed
        assert shown(reply.pane.body) == rendered(streamed)
        saved = store.get_session(c.session_id).messages[-1]
        assert saved.thinking == streamed


async def test_the_load_panel_leaves_the_screen_once_the_model_is_ready(
    qwen3tui_home: Path,
) -> None:
    """Hidden is not enough: its progress bar's animation timer would keep waking the UI."""
    engine = FakeEngine()
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=(100, 36)) as pilot:
        c = await ready(pilot)
        await pilot.pause()
        assert not c.query(LoadProgressPanel) and not c.query(ProgressBar)
        # A later load's progress (a /model switch) reaches the detached panel harmlessly.
        app.post_message(EngineProgress(LoadProgress("load", 3, 10)))
        await pilot.pause()
        assert not c.query(LoadProgressPanel)
