"""Files in the prompt, in the chat: `@path` and `/file PATH` attach a text file, shown as a
chip, sent to the model as a fenced block, saved apart from the typed text, shown again when
the session is reopened; what cannot be attached is refused in one line with the numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_engine import FakeEngine
from textual.content import Content
from tui_helpers import chat, finish_turn, make_app, ready, send

from qwen3tui.store import Attachment, SessionStore, expand_prompt
from qwen3tui.tui.widgets.chat_message import Notice, UserMessage

pytestmark = pytest.mark.anyio

SIZE = (100, 36)
CODE = "def walrus():\n    return 'tusks'\n"
CODE_FILE = Attachment(name="walrus.py", size=len(CODE), lines=2, text=CODE)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """@paths are read from the directory qwen3tui was started in."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "walrus.py").write_text(CODE)
    monkeypatch.chdir(work)
    return work


def pending(c: object) -> str:
    """The composer's border title (the files waiting for the next message) as plain text."""
    title = c.composer.border_title  # type: ignore[attr-defined]
    return Content.from_markup(title).plain if title else ""


def notices(app: object) -> list[str]:
    return [n.text for n in chat(app).conversation.query(Notice)]  # type: ignore[arg-type]


def saved(app: object) -> list:
    c = chat(app)  # type: ignore[arg-type]
    assert c.saver.wait_idle(10), "the saver did not write everything"
    return c.store.get_session(c.session_id).messages


async def test_an_at_path_attaches_the_file_as_a_chip_and_a_fenced_block(
    qwen3tui_home: Path, workdir: Path
) -> None:
    engine = FakeEngine()
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "What does @walrus.py return?")
        await finish_turn(pilot)
        assert engine.calls[0].messages[-1]["content"] == (
            "File: walrus.py (33 bytes, 2 lines)\n```python\n" + CODE + "```\n\n"
            "What does @walrus.py return?"
        )
        [shown] = c.conversation.query(UserMessage)
        assert str(shown.render()) == (
            "What does @walrus.py return?\n[walrus.py · 33 bytes · 2 lines]"
        )
        [user, _reply] = saved(app)
        assert (user.content, user.attachments) == ("What does @walrus.py return?", [CODE_FILE])
        await send(pilot, "And again?")  # the file stays in the conversation the model reads
        await finish_turn(pilot)
        assert engine.calls[1].messages[0]["content"] == engine.calls[0].messages[-1]["content"]


async def test_slash_file_attaches_to_the_next_message_only(
    qwen3tui_home: Path, workdir: Path
) -> None:
    engine = FakeEngine()
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "/file walrus.py")
        assert pending(c) == "+ [walrus.py · 33 bytes · 2 lines]"
        assert engine.calls == []
        await send(pilot, "Explain it.")
        await finish_turn(pilot)
        assert engine.calls[0].messages[-1]["content"] == expand_prompt("Explain it.", [CODE_FILE])
        assert pending(c) == ""
        await send(pilot, "Thanks.")
        await finish_turn(pilot)
        assert engine.calls[1].messages[-1]["content"] == "Thanks."
        assert [m.attachments for m in saved(app) if m.role == "user"] == [[CODE_FILE], []]


async def test_a_binary_file_is_refused_with_the_numbers_and_the_text_is_kept(
    qwen3tui_home: Path, workdir: Path
) -> None:
    (workdir / "photo.jpg").write_bytes(b"\xff\xd8\xff\x00" + b"x" * 96)
    engine = FakeEngine()
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "What is in @photo.jpg?")
        assert notices(app)[-1] == (
            "cannot attach photo.jpg: it is binary (a NUL byte at offset 3 of 100 bytes);"
            " only text files can be attached"
        )
        assert c.composer.text == "What is in @photo.jpg?"
        await send(pilot, "/file missing.txt")
        assert notices(app)[-1] == "cannot attach missing.txt: no such file"
        assert pending(c) == ""
        assert engine.calls == []


async def test_a_file_larger_than_the_context_is_refused_with_the_numbers(
    qwen3tui_home: Path, workdir: Path
) -> None:
    (workdir / "book.txt").write_text("word " * 500)
    engine = FakeEngine(context_length=400)  # the fake counts words (+4 per message)
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, "Summarise @book.txt")
        assert notices(app)[-1].startswith("cannot attach book.txt: 50")
        assert notices(app)[-1].endswith(
            "tokens, but only 294 tokens of the 400-token context are left for files in this"
            " message (the rest is the message itself and room for the reply)"
        )
        assert c.composer.text == "Summarise @book.txt"
        await send(pilot, "/file book.txt")
        assert notices(app)[-1].startswith("cannot attach book.txt: ")
        assert engine.calls == []


async def test_a_double_at_sends_a_literal_at_and_attaches_nothing(
    qwen3tui_home: Path, workdir: Path
) -> None:
    engine = FakeEngine()
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "ask @@walrus.py on the forum")
        await finish_turn(pilot)
        assert engine.calls[0].messages[-1]["content"] == "ask @walrus.py on the forum"


async def test_a_reopened_session_shows_the_chip_and_gives_the_model_the_file(
    qwen3tui_home: Path,
) -> None:
    store = SessionStore.open(qwen3tui_home / "sessions.db")
    s = store.create_session("fake")
    store.add_user_message(s.id, "What does it return?", [CODE_FILE])
    engine = FakeEngine()
    app = make_app(engine, qwen3tui_home, store=store, continue_last=True)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        [shown] = c.conversation.query(UserMessage)
        assert "[walrus.py · 33 bytes · 2 lines]" in str(shown.render())
        await send(pilot, "Go on.")
        await finish_turn(pilot)
        assert engine.calls[0].messages[0]["content"] == expand_prompt(
            "What does it return?", [CODE_FILE]
        )
        md = c.conversation_export("md")
        assert "**Attached:** `walrus.py` · 33 bytes · 2 lines" in md


async def test_tab_after_an_at_completes_the_path(qwen3tui_home: Path, workdir: Path) -> None:
    (workdir / "src").mkdir()
    (workdir / "src" / "main.py").write_text("")
    app = make_app(FakeEngine(), qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        c.composer.focus()
        c.composer.text = "look at @wal"
        c.composer.move_cursor(c.composer.document.end)
        await pilot.press("tab")
        assert c.composer.text == "look at @walrus.py"
        c.composer.text = "and @sr"
        c.composer.move_cursor(c.composer.document.end)
        await pilot.press("tab", "tab")
        assert c.composer.text == "and @src/main.py"


async def test_an_absolute_path_that_looks_like_a_markup_tag_is_shown_as_text(
    qwen3tui_home: Path, workdir: Path
) -> None:
    """ "[/tmp/…]" in a notification once read as a closing tag and crashed the app."""
    engine = FakeEngine()
    app = make_app(engine, qwen3tui_home)
    async with app.run_test(size=SIZE) as pilot:
        c = await ready(pilot)
        await send(pilot, f"/file {workdir / 'walrus.py'}")
        await pilot.pause()
        assert pending(c) == f"+ [{workdir / 'walrus.py'} · 33 bytes · 2 lines]"
        await send(pilot, "Explain it.")
        await finish_turn(pilot)
        assert (
            engine.calls[0]
            .messages[-1]["content"]
            .startswith(f"File: {workdir / 'walrus.py'} (33 bytes, 2 lines)\n```python\n")
        )
