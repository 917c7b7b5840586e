"""`/model`: the models listed in the chat, and a switch mid-conversation to another engine."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from fake_engine import ANSWER, FakeEngine
from test_models_cli import cache_repo, checkpoint_files
from tui_helpers import finish_turn, make_app, ready, send, wait_for_thread, wait_until

from qwen3tui.engine.errors import ModelNotFoundError
from qwen3tui.engine.info import EngineInfo
from qwen3tui.engine.memory_fit import ModelTooLargeError
from qwen3tui.tui.widgets.chat_message import Notice

pytestmark = pytest.mark.anyio


@dataclass
class NamedEngine(FakeEngine):
    """A fake engine under another model's name, that says when it is told to stop warming."""

    name: str = "fake/Qwen3-Second"
    stopped_warming: threading.Event | None = None

    @property
    def info(self) -> EngineInfo:
        return replace(super().info, model=self.name)

    def stop_warming(self) -> None:
        if self.stopped_warming is not None:
            self.stopped_warming.set()


@pytest.fixture(autouse=True)
def empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Hugging Face cache of the test's own, never the machine's."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    hub = tmp_path / "hf" / "hub"
    hub.mkdir(parents=True)
    return hub


def notices(app: Any) -> list[str]:
    return [n.text for n in app.chat.conversation.query(Notice)]


def meta(reply: Any) -> str:
    return str(reply.meta.content)


async def test_model_name_switches_engines_and_the_conversation_continues(
    tmp_path: Path,
) -> None:
    first = NamedEngine(name="fake/Qwen3-Fake", stopped_warming=threading.Event())
    second = NamedEngine(name="fake/Qwen3-Second", thinking_mode="instruct")
    asked: list[str] = []

    def open_model(model: str, progress: Any) -> NamedEngine:
        asked.append(model)
        return second

    app = make_app(first, tmp_path, model_factory=open_model)
    async with app.run_test() as pilot:
        c = await ready(pilot)
        await send(pilot, "hello")
        await finish_turn(pilot)

        await send(pilot, "/model fake/Qwen3-Second")
        await wait_until(pilot, lambda: c.engine is second, what="the new engine")
        await send(pilot, "and now?")
        await finish_turn(pilot)

        assert asked == ["fake/Qwen3-Second"]
        assert first.stopped_warming.is_set()  # the old engine's warm-up stopped at once
        assert len(first.calls) == 1
        # The whole conversation went to the new model.
        assert [m["content"] for m in second.calls[0].messages] == [
            "hello",
            "".join(ANSWER),
            "and now?",
        ]
        assert c.thinking_mode == "instruct"  # the new model's mode, from its template
        assert not second.calls[0].options.thinking
        assert (
            "Now chatting with fake/Qwen3-Second (instruct-only); the conversation continues."
            in (notices(app))
        )
        # Each reply's meta line names the model that wrote it.
        old_reply, new_reply = c.replies()
        assert meta(old_reply).endswith(" · fake/Qwen3-Fake")
        assert meta(new_reply).endswith(" · fake/Qwen3-Second")
        session = app.store.get_session(c.session_id)
        assert [m.model for m in session.messages if m.role == "assistant"] == [
            "fake/Qwen3-Fake",
            "fake/Qwen3-Second",
        ]


async def test_a_session_with_replies_of_two_models_shows_each_model_when_reopened(
    tmp_path: Path,
) -> None:
    second = NamedEngine(name="fake/Qwen3-Second")
    app = make_app(FakeEngine(), tmp_path, model_factory=lambda model, progress: second)
    async with app.run_test() as pilot:
        c = await ready(pilot)
        await send(pilot, "hello")
        await finish_turn(pilot)
        await send(pilot, "/model fake/Qwen3-Second")
        await wait_until(pilot, lambda: c.engine is second, what="the new engine")
        await send(pilot, "again")
        await finish_turn(pilot)
        session_id = c.session_id

        await send(pilot, "/new")
        c.open_session(session_id)
        await pilot.pause()

        assert [meta(r).rsplit(" · ", 1)[-1] for r in c.replies()] == [
            "fake/Qwen3-Fake",
            "fake/Qwen3-Second",
        ]


async def test_one_model_only_keeps_the_meta_line_as_it_was(tmp_path: Path) -> None:
    app = make_app(FakeEngine(), tmp_path, model_factory=lambda model, progress: None)
    async with app.run_test() as pilot:
        c = await ready(pilot)
        await send(pilot, "hello")
        await finish_turn(pilot)
        assert "fake/Qwen3-Fake" not in meta(c.replies()[0])


async def test_a_switch_while_a_reply_streams_is_refused_in_one_line(tmp_path: Path) -> None:
    engine = FakeEngine(hold_after=2)
    asked: list[str] = []
    app = make_app(engine, tmp_path, model_factory=lambda model, progress: asked.append(model))
    async with app.run_test() as pilot:
        c = await ready(pilot)
        await send(pilot, "hello")
        await wait_for_thread(engine.holding)

        await send(pilot, "/model fake/Qwen3-Second")

        assert notices(app)[-1] == "Stop the reply first (Esc), then switch models."
        engine.release.set()
        await finish_turn(pilot)
        assert asked == [] and c.engine is engine


async def test_when_both_models_would_not_fit_the_old_one_is_released_first(
    tmp_path: Path,
) -> None:
    first = FakeEngine()
    second = NamedEngine()
    loaded_beside: list[object] = []

    def open_model(model: str, progress: Any) -> NamedEngine:
        loaded_beside.append(app.engine)  # what is still loaded while this one loads
        if app.engine is not None:
            raise ModelTooLargeError(f"{model} does not fit: it needs about 9.0 GiB ...")
        return second

    app = make_app(first, tmp_path, model_factory=open_model)
    async with app.run_test() as pilot:
        c = await ready(pilot)
        await send(pilot, "hello")
        await finish_turn(pilot)

        await send(pilot, "/model fake/Qwen3-Second")
        await wait_until(pilot, lambda: c.engine is second, what="the new engine")
        await send(pilot, "still there?")
        await finish_turn(pilot)

        assert loaded_beside == [first, None]
        assert [m["content"] for m in second.calls[0].messages][0] == "hello"


async def test_a_model_that_cannot_load_leaves_the_old_one_in_place(tmp_path: Path) -> None:
    first = FakeEngine()

    def open_model(model: str, progress: Any) -> None:
        raise ModelNotFoundError(f"{model} is neither a local directory nor a model on the Hub.")

    app = make_app(first, tmp_path, model_factory=open_model)
    async with app.run_test() as pilot:
        c = await ready(pilot)
        await send(pilot, "/model nope/Nothing")
        await wait_until(pilot, lambda: c.engine is first, what="the old engine back")
        await send(pilot, "hello")
        await finish_turn(pilot)

        assert (
            "Could not switch to nope/Nothing: nope/Nothing is neither a local directory nor a"
            " model on the Hub." in notices(app)
        )
        assert "Still chatting with fake/Qwen3-Fake." in notices(app)
        assert len(first.calls) == 1


async def test_model_alone_lists_the_models_with_the_current_one_marked(
    tmp_path: Path, empty_hub: Path, shared_dir: Path
) -> None:
    dense = json.loads((shared_dir / "config.json").read_text())
    cache_repo(empty_hub, "Qwen/Qwen3-1.7B", checkpoint_files(dense, None, shared_dir))
    cache_repo(empty_hub, "fake/Qwen3-Fake", checkpoint_files(dense, None, shared_dir))
    app = make_app(FakeEngine(), tmp_path, model_factory=lambda model, progress: None)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "/model")
        await wait_until(pilot, lambda: "Models" in notices(app)[-1], what="the list")

        lines = notices(app)[-1].splitlines()
        assert lines[0] == "Models (/model NAME switches; the conversation continues):"
        assert lines[1].startswith("▶ fake/Qwen3-Fake  (")  # the loaded one
        assert lines[2].startswith("  Qwen/Qwen3-1.7B  (")
        assert lines[2].endswith(" kB, dense, thinking on/off, bfloat16)")


async def test_model_with_a_short_name_switches_to_the_listed_model(
    tmp_path: Path, empty_hub: Path, shared_dir: Path
) -> None:
    dense = json.loads((shared_dir / "config.json").read_text())
    cache_repo(empty_hub, "Qwen/Qwen3-1.7B", checkpoint_files(dense, None, shared_dir))
    asked: list[str] = []
    second = NamedEngine(name="Qwen/Qwen3-1.7B")

    def open_model(model: str, progress: Any) -> NamedEngine:
        asked.append(model)
        return second

    app = make_app(FakeEngine(), tmp_path, model_factory=open_model)
    async with app.run_test() as pilot:
        c = await ready(pilot)
        await send(pilot, "/model Qwen3-1.7B")
        await wait_until(pilot, lambda: c.engine is second, what="the new engine")
        assert asked == ["Qwen/Qwen3-1.7B"]
