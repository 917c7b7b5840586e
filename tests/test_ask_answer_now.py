"""`qwen3tui ask` and Ctrl+C: the first one while the model thinks means "answer now", the next
one stops the reply; after the thinking, the first one stops it (as it always did)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from qwen3tui.engine.generate import BUDGET_STOP_TEXT


def ask_process(home: Path, checkpoint: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "qwen3tui", "ask", "--model", str(checkpoint),
         "--dtype", "float32", "--seed", "5", "--max-new-tokens", "100000", *args],
        env={**os.environ, "QWEN3TUI_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip


def read_at_least(stream, size: int) -> bytes:
    got = b""
    while len(got) < size:
        chunk = os.read(stream.fileno(), 4096)
        assert chunk, f"the stream ended after {got!r}"
        got += chunk
    return got


def saved_reply(home: Path) -> dict:
    from qwen3tui.store import SessionStore

    store = SessionStore.open(home / "sessions.db")
    try:
        (summary,) = store.list_sessions()
        session = store.get_session(summary.id)
    finally:
        store.close()
    reply = session.messages[-1]
    return {"status": reply.status, "thinking": reply.thinking, "usage": reply.usage}


@pytest.mark.slow
def test_the_first_ctrl_c_while_thinking_answers_now_and_the_second_stops(
    tiny_checkpoint, tmp_path
):
    # A random model thinks on and on (no budget): only Ctrl+C ends its thinking.
    proc = ask_process(tmp_path, tiny_checkpoint, "--think", "--budget", "off", "Think forever")
    try:
        read_at_least(proc.stderr, 200)  # thinking streams to stderr
        proc.send_signal(signal.SIGINT)
        read_at_least(proc.stdout, 40)  # now it answers on stdout
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err.decode()
    assert b"answering now, as asked (Ctrl+C again stops the reply)." in err
    reply = saved_reply(tmp_path)
    assert reply["status"] == "cancelled"
    assert reply["usage"]["thinking_cut_by_user"] is True
    assert reply["thinking"].endswith(BUDGET_STOP_TEXT.split("</think>")[0].strip())


@pytest.mark.slow
def test_ctrl_c_after_the_thinking_stops_the_reply_at_once(tiny_checkpoint, tmp_path):
    proc = ask_process(tmp_path, tiny_checkpoint, "--think", "--budget", "0", "Answer forever")
    try:
        read_at_least(proc.stdout, 40)  # the budget of 0 closed the thinking: it answers
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err.decode()
    assert b"answering now" not in err
    reply = saved_reply(tmp_path)
    assert reply["status"] == "cancelled" and reply["usage"]["thinking_cut_by_user"] is False
