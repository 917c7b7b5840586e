"""Driving the real qwen3tui in a real terminal (tmux), for the terminal-level tests.

`start` runs `python -m qwen3tui --model <checkpoint>` in a detached tmux session with its own
QWEN3TUI_HOME; the tests type with `type_line` or `keys`, and wait on what the screen shows
(`wait_for`), never on time. Needs the `tmux` binary (Debian: `apt-get install -y tmux`): the
`tmux` fixture skips without it, and fails in CI, where it must be installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

WIDTH, HEIGHT = 110, 34
SESSION = "qt"

Tmux = Callable[..., str]


@pytest.fixture
def tmux() -> Iterator[Tmux]:
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


def screen(tmux: Tmux) -> str:
    return tmux("capture-pane", "-p", "-t", SESSION)


def flat(text: str) -> str:
    """The screen's text with wrapped lines joined (a long notice wraps at the chat's width)."""
    return " ".join(text.split())


def wait_for(
    tmux: Tmux,
    condition: Callable[[str], bool],
    what: str,
    timeout: float = 90.0,
    seen: list[str] | None = None,
) -> str:
    """Poll the screen until `condition` holds; the timeout only bounds a failure."""
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


def start(tmux: Tmux, home: Path, checkpoint: Path, *extra: str, context: int = 1024) -> None:
    """Start qwen3tui on `checkpoint` (CPU, float32); the screen shows "ctx 0 / {context:,}"
    once the model is loaded."""
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
            str(context),
            *extra,
        ]
    )
    # The shell stays after qwen3tui exits so the test can read the exit status.
    shell = f"{command}; echo QWEN3TUI-EXITED-$?; sleep 60"
    env = f"QWEN3TUI_HOME={home} TERM=xterm-256color COLORTERM=truecolor"
    tmux("kill-session", "-t", SESSION)
    tmux(
        "new-session",
        "-d",
        "-s",
        SESSION,
        "-x",
        str(WIDTH),
        "-y",
        str(HEIGHT),
        f"env {env} {shell}",
    )


def keys(tmux: Tmux, *names: str) -> None:
    """Press keys by tmux name ("Enter", "C-g")."""
    tmux("send-keys", "-t", SESSION, *names)


def type_line(tmux: Tmux, text: str) -> None:
    tmux("send-keys", "-t", SESSION, "-l", text)
    keys(tmux, "Enter")


def quit_app(tmux: Tmux) -> None:
    keys(tmux, "C-q")
    wait_for(tmux, lambda s: "Quit qwen3tui?" in s, "the quit question")
    keys(tmux, "y")
    wait_for(tmux, lambda s: "QWEN3TUI-EXITED-0" in s, "qwen3tui to exit cleanly", timeout=30)
