"""`/file` in a real terminal (tmux): a binary file is refused on screen in one line, a text file
waits on the composer's border, goes with the next message as a chip, and is still there when
the session is continued."""

from __future__ import annotations

from pathlib import Path

import pytest
from tmux_terminal import (  # noqa: F401 -- tmux is a fixture
    Tmux,
    flat,
    quit_app,
    start,
    tmux,
    type_line,
    wait_for,
)

from qwen3tui.settings import TurnSettings, UserSettings

pytestmark = pytest.mark.slow


def test_file_attaches_a_text_file_and_refuses_a_binary_one(
    tmux: Tmux,  # noqa: F811
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
