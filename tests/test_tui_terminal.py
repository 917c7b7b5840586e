"""qwen3tui in a real terminal (tmux), as a new user would run it.

Starts `python -m qwen3tui --model <tiny checkpoint>` with a fresh QWEN3TUI_HOME, types a
message, reads the streamed reply off the screen, quits, then starts `--continue` and finds
the conversation again. Needs the `tmux` binary (Debian: `apt-get install -y tmux`).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tmux_terminal import (  # noqa: F401 -- tmux is a fixture
    Tmux,
    quit_app,
    start,
    tmux,
    type_line,
    wait_for,
)

from qwen3tui.settings import TurnSettings, UserSettings

pytestmark = pytest.mark.slow


def test_a_new_user_chats_quits_and_continues(
    tmux: Tmux,  # noqa: F811 -- the fixture
    tmp_path: Path,
    tiny_checkpoint: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # A user who prefers a short thinking budget (random weights never stop thinking alone).
    UserSettings(turn=TurnSettings(thinking_budget=128, max_tokens=200)).save(
        home / "settings.toml"
    )

    start(tmux, home, tiny_checkpoint)
    wait_for(tmux, lambda s: "ctx 0 / 1,024" in s, "the model to load")
    type_line(tmux, "Hello from tmux")
    frames: list[str] = []
    final = wait_for(
        tmux,
        lambda s: "Thought for" in s and "tok/s ·" in s.split("Thought")[-1],
        "the reply to finish",
        seen=frames,
    )
    counts = {
        int(m.group(1)) for f in frames for m in [re.search(r"Thinking… (\d+) / 128", f)] if m
    }
    assert len(counts) >= 2, f"the thinking pane did not stream (counts seen: {counts})"
    assert "Hello from tmux" in final
    assert "budget reached" in final

    quit_app(tmux)

    start(tmux, home, tiny_checkpoint, "--continue")
    resumed = wait_for(
        tmux, lambda s: "Hello from tmux" in s and "Thought for" in s, "the saved conversation"
    )
    assert "budget reached" in resumed
    quit_app(tmux)


def test_sigterm_mid_reply_saves_the_reply_as_interrupted_and_exits_143(
    tmux: Tmux,  # noqa: F811 -- the fixture
    tmp_path: Path,
    tiny_checkpoint: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # Random weights never close </think>: with no budget the reply goes on until stopped.
    UserSettings(turn=TurnSettings(thinking_budget=None, max_tokens=100000)).save(
        home / "settings.toml"
    )
    start(tmux, home, tiny_checkpoint)
    wait_for(tmux, lambda s: "ctx 0 / 1,024" in s, "the model to load")
    type_line(tmux, "Think forever")
    wait_for(tmux, lambda s: re.search(r"Thinking… \d{2,}", s) is not None, "the reply to stream")
    pids = subprocess.run(
        ["pgrep", "-f", "--", f"^{sys.executable} -m qwen3tui --model {tiny_checkpoint}"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout.split()
    assert len(pids) == 1, pids
    os.kill(int(pids[0]), 15)
    wait_for(tmux, lambda s: "QWEN3TUI-EXITED-143" in s, "qwen3tui to exit on SIGTERM", timeout=30)
    from qwen3tui.store import SessionStore

    with SessionStore.open(home / "sessions.db") as store:
        (summary,) = store.list_sessions()
        user, reply = store.get_session(summary.id).messages
    assert user.content == "Think forever"
    assert reply.status == "interrupted" and len(reply.thinking) > 0
