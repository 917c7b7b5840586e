"""qwen3tui in a real terminal (tmux), as a new user would run it.

Starts `python -m qwen3tui --model <tiny checkpoint>` with a fresh QWEN3TUI_HOME, types a
message, reads the streamed reply off the screen, quits, then starts `--continue` and finds
the conversation again. Needs the `tmux` binary (Debian: `apt-get install -y tmux`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from qwen3tui.settings import TurnSettings, UserSettings

pytestmark = pytest.mark.slow

WIDTH, HEIGHT = 110, 34


@pytest.fixture
def tmux() -> Callable[..., str]:
    if shutil.which("tmux") is None:
        if os.environ.get("QWEN3TUI_REQUIRE_SHARED") or os.environ.get("CI"):
            pytest.fail("tmux is required here: install it (Debian: apt-get install -y tmux)")
        pytest.skip("tmux not installed (Debian: apt-get install -y tmux)")
    socket = f"qwen3tui-test-{uuid.uuid4().hex[:8]}"

    def run(*args: str) -> str:
        out = subprocess.run(
            ["tmux", "-L", socket, *args], capture_output=True, text=True, timeout=30
        )
        return out.stdout

    yield run
    subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True, timeout=30)


def screen(tmux: Callable[..., str]) -> str:
    return tmux("capture-pane", "-p", "-t", "qt")


def wait_for(
    tmux: Callable[..., str],
    condition: Callable[[str], bool],
    what: str,
    timeout: float = 90.0,
    seen: list[str] | None = None,
) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = screen(tmux)
        if seen is not None:
            seen.append(text)
        if condition(text):
            return text
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; the screen shows:\n{text}")


def start(tmux: Callable[..., str], home: Path, checkpoint: Path, *extra: str) -> None:
    command = " ".join(
        [
            sys.executable,
            "-m",
            "qwen3tui",
            "--model",
            str(checkpoint),
            "--device",
            "cpu",
            "--dtype",
            "float32",
            "--context",
            "1024",
            *extra,
        ]
    )
    # The shell stays after qwen3tui exits so the test can read the exit status.
    shell = f"{command}; echo QWEN3TUI-EXITED-$?; sleep 60"
    env = f"QWEN3TUI_HOME={home} TERM=xterm-256color COLORTERM=truecolor"
    tmux("kill-session", "-t", "qt")
    tmux("new-session", "-d", "-s", "qt", "-x", str(WIDTH), "-y", str(HEIGHT), f"env {env} {shell}")


def test_a_new_user_chats_quits_and_continues(
    tmux: Callable[..., str], tmp_path: Path, tiny_checkpoint: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # A user who prefers a short thinking budget (random weights never stop thinking alone).
    UserSettings(turn=TurnSettings(thinking_budget=128, max_tokens=200)).save(
        home / "settings.toml"
    )

    start(tmux, home, tiny_checkpoint)
    wait_for(tmux, lambda s: "ctx 0 / 1,024" in s, "the model to load")
    tmux("send-keys", "-t", "qt", "-l", "Hello from tmux")
    tmux("send-keys", "-t", "qt", "Enter")
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

    tmux("send-keys", "-t", "qt", "C-q")
    wait_for(tmux, lambda s: "Quit qwen3tui?" in s, "the quit question")
    tmux("send-keys", "-t", "qt", "y")
    wait_for(tmux, lambda s: "QWEN3TUI-EXITED-0" in s, "qwen3tui to exit cleanly", timeout=30)

    start(tmux, home, tiny_checkpoint, "--continue")
    resumed = wait_for(
        tmux, lambda s: "Hello from tmux" in s and "Thought for" in s, "the saved conversation"
    )
    assert "budget reached" in resumed
    tmux("send-keys", "-t", "qt", "C-q")
    wait_for(tmux, lambda s: "Quit qwen3tui?" in s, "the quit question")
    tmux("send-keys", "-t", "qt", "y")
    wait_for(tmux, lambda s: "QWEN3TUI-EXITED-0" in s, "qwen3tui to exit cleanly", timeout=30)


def test_sigterm_mid_reply_saves_the_reply_as_interrupted_and_exits_143(
    tmux: Callable[..., str], tmp_path: Path, tiny_checkpoint: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # Random weights never close </think>: with no budget the reply goes on until stopped.
    UserSettings(turn=TurnSettings(thinking_budget=None, max_tokens=100000)).save(
        home / "settings.toml"
    )
    start(tmux, home, tiny_checkpoint)
    wait_for(tmux, lambda s: "ctx 0 / 1,024" in s, "the model to load")
    tmux("send-keys", "-t", "qt", "-l", "Think forever")
    tmux("send-keys", "-t", "qt", "Enter")
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
