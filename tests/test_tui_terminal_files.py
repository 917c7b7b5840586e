"""`/file` in a real terminal (tmux): a binary file is refused on screen in one line, a text file
waits on the composer's border, goes with the next message as a chip, and is still there when
the session is continued."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from test_tui_terminal import start, tmux, wait_for  # noqa: F401 -- tmux is a fixture

from qwen3tui.settings import TurnSettings, UserSettings

pytestmark = pytest.mark.slow


def flat(screen: str) -> str:
    """The screen's text with wrapped lines joined (a long notice wraps at the chat's width)."""
    return " ".join(screen.split())


def type_line(tmux: Callable[..., str], text: str) -> None:  # noqa: F811
    tmux("send-keys", "-t", "qt", "-l", text)
    tmux("send-keys", "-t", "qt", "Enter")


def quit_app(tmux: Callable[..., str]) -> None:  # noqa: F811
    tmux("send-keys", "-t", "qt", "C-q")
    wait_for(tmux, lambda s: "Quit qwen3tui?" in s, "the quit question")
    tmux("send-keys", "-t", "qt", "y")
    wait_for(tmux, lambda s: "QWEN3TUI-EXITED-0" in s, "qwen3tui to exit cleanly", timeout=30)


def test_file_attaches_a_text_file_and_refuses_a_binary_one(
    tmux: Callable[..., str],  # noqa: F811
    tmp_path: Path,
    tiny_checkpoint: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    UserSettings(turn=TurnSettings(thinking_budget=16, max_tokens=40)).save(home / "settings.toml")
    (tmp_path / "tusks.txt").write_text("Walrus tusks are teeth.\n")
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff\x00jpeg")

    monkeypatch.chdir(tmp_path)  # the terminal's shell, and so qwen3tui, start here
    start(tmux, home, tiny_checkpoint)
    wait_for(tmux, lambda s: "ctx 0 / 1,024" in s, "the model to load")
    type_line(tmux, "/file photo.jpg")
    wait_for(
        tmux,
        lambda s: (
            "cannot attach photo.jpg: it is binary (a NUL byte at offset 3 of 8 bytes)" in flat(s)
        ),
        "the binary file to be refused",
    )
    type_line(tmux, "/file tusks.txt")
    wait_for(tmux, lambda s: "[tusks.txt · 24 bytes · 1 line]" in s, "the pending chip")
    type_line(tmux, "What are tusks?")
    final = wait_for(
        tmux,
        lambda s: "Thought for" in s and "tok/s ·" in s.split("Thought")[-1],
        "the reply to finish",
    )
    assert "What are tusks?" in final
    assert "[tusks.txt · 24 bytes · 1 line]" in final
    quit_app(tmux)

    start(tmux, home, tiny_checkpoint, "--continue")
    wait_for(
        tmux,
        lambda s: "What are tusks?" in s and "[tusks.txt · 24 bytes · 1 line]" in s,
        "the chip in the continued session",
    )
    quit_app(tmux)
