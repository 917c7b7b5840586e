"""qwen3tui in a real terminal (tmux), as a new user would run it.

Starts `python -m qwen3tui --model <tiny checkpoint>` with a fresh QWEN3TUI_HOME, attaches a file
with `/file` (a binary one is refused), types a message, reads the streamed reply off the screen,
edits the message into a second version and goes back to the first, quits, then starts
`--continue` and finds the conversation, its file and the version shown again. A reply ended by
SIGTERM or by closing its terminal is saved as interrupted and the process ends. One session does
the new user's whole path: each start of the app costs seconds of imports on 2 cores. Needs the
`tmux` binary (Debian: `apt-get install -y tmux`).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tmux_terminal import (  # noqa: F401 -- tmux is a fixture
    Tmux,
    flat,
    keys,
    quit_app,
    start,
    tmux,
    type_line,
    wait_for,
)

from qwen3tui.settings import TurnSettings, UserSettings

pytestmark = pytest.mark.slow

CHIP = "[tusks.txt · 24 bytes · 1 line]"


def app_pids(checkpoint: Path) -> list[int]:
    """The process ids of qwen3tui running on `checkpoint`."""
    pids = subprocess.run(
        ["pgrep", "-f", "--", f"^{sys.executable} -m qwen3tui --model {checkpoint}"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout.split()
    return [int(p) for p in pids]


def replied_after(text: str, screen: str) -> bool:
    """The reply after `text` has finished (its meta line shows)."""
    return text in screen and "first token" in screen.split(text)[-1]


def test_a_new_user_attaches_chats_edits_quits_and_continues(
    tmux: Tmux,  # noqa: F811 -- the fixture
    tmp_path: Path,
    tiny_checkpoint: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # A user who prefers a short thinking budget (random weights never stop thinking alone),
    # and short answers: each reply, with its file and the welcome, fits the 34-line screen.
    UserSettings(turn=TurnSettings(thinking_budget=128, max_tokens=140)).save(
        home / "settings.toml"
    )
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
    wait_for(tmux, lambda s: CHIP in s, "the pending chip")
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
    assert CHIP in final

    # Edit and branch: Ctrl+Up puts the last message in the composer, Enter sends the edit as
    # a new version (‹ 2/2 ›), Alt+Left shows the original again.
    keys(tmux, "C-Up")
    wait_for(tmux, lambda s: "editing message 1" in s, "the editing state")
    keys(tmux, "C-u")  # the composer holds the old text; start the new version afresh
    type_line(tmux, "Narwhal question")
    edited = wait_for(
        tmux,
        lambda s: replied_after("Narwhal question", s) and "‹ 2/2 ›" in s,
        "the edited version's reply",
    )
    assert "Hello from tmux" not in edited

    keys(tmux, "M-Left")
    back = wait_for(
        tmux, lambda s: "Hello from tmux" in s and "‹ 1/2 ›" in s, "the original version"
    )
    assert "Narwhal question" not in back
    quit_app(tmux)

    # --continue opens the branch that was shown, with its file and its reply.
    start(tmux, home, tiny_checkpoint, "--continue")
    resumed = wait_for(
        tmux,
        lambda s: replied_after("Hello from tmux", s) and "Thought for" in s and CHIP in s,
        "the saved conversation",
    )
    assert "budget reached" in resumed
    assert "‹ 1/2 ›" in resumed and "Narwhal question" not in resumed
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
    (pid,) = app_pids(tiny_checkpoint)
    os.kill(pid, 15)
    wait_for(tmux, lambda s: "QWEN3TUI-EXITED-143" in s, "qwen3tui to exit on SIGTERM", timeout=30)
    from qwen3tui.store import SessionStore

    with SessionStore.open(home / "sessions.db") as store:
        (summary,) = store.list_sessions()
        user, reply = store.get_session(summary.id).messages
    assert user.content == "Think forever"
    assert reply.status == "interrupted" and len(reply.thinking) > 0


def test_closing_the_terminal_mid_reply_saves_the_reply_and_ends_the_process(
    tmux: Tmux,  # noqa: F811 -- the fixture
    tmp_path: Path,
    tiny_checkpoint: Path,
) -> None:
    """The window is closed (SIGHUP, the terminal gone): Textual cannot restore a terminal that
    is gone, yet the process must end, its reply saved as interrupted."""
    home = tmp_path / "home"
    home.mkdir()
    UserSettings(turn=TurnSettings(thinking_budget=None, max_tokens=100000)).save(
        home / "settings.toml"
    )
    start(tmux, home, tiny_checkpoint)
    wait_for(tmux, lambda s: "ctx 0 / 1,024" in s, "the model to load")
    type_line(tmux, "Think forever")
    wait_for(tmux, lambda s: re.search(r"Thinking… \d{2,}", s) is not None, "the reply to stream")
    (pid,) = app_pids(tiny_checkpoint)
    tmux("kill-server")
    deadline = time.monotonic() + 60  # bounds a failure only
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists(), "qwen3tui outlived its closed terminal"
    from qwen3tui.store import SessionStore

    with SessionStore.open(home / "sessions.db") as store:
        (summary,) = store.list_sessions()
        user, reply = store.get_session(summary.id).messages
    assert user.content == "Think forever"
    assert reply.status == "interrupted" and len(reply.thinking) > 0
