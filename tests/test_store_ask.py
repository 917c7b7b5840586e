"""`qwen3tui ask` records into the store: multi-turn with --continue, and SIGKILL mid-reply (a
real process; the other runs go through `cli.main` in this process, tests/cli_helpers.py)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import Ran, run_cli, session_list, session_show

pytestmark = pytest.mark.slow


def ask(home: Path, checkpoint: Path, *args: str) -> Ran:
    return run_cli(
        "ask",
        "--model",
        str(checkpoint),
        "--dtype",
        "float32",
        "--max-new-tokens",
        "6",
        "--seed",
        "3",
        *args,
        home=home,
    )


def saved_reply_text(db: Path) -> str:
    """Thinking + answer of the newest reply, as another process reading the file sees it."""
    if not db.exists():
        return ""
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute(
            "SELECT id, thinking || content FROM messages WHERE role = 'assistant'"
            " ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return ""
        chunks = conn.execute(  # what the reply has streamed so far
            "SELECT thinking || answer FROM reply_chunks WHERE message_id = ? ORDER BY seq",
            (row[0],),
        ).fetchall()
        return row[1] + "".join(c[0] for c in chunks)
    except sqlite3.OperationalError:  # schema not created yet
        return ""
    finally:
        conn.close()


def test_ask_then_ask_continue_is_one_two_turn_session(tiny_checkpoint, qwen3tui_home):
    first = ask(qwen3tui_home, tiny_checkpoint, "--json", "first question")
    assert first.returncode == 0, first.stderr
    second = ask(qwen3tui_home, tiny_checkpoint, "--json", "--continue", "second question")
    assert second.returncode == 0, second.stderr
    session_id = json.loads(first.stdout)["session_id"]
    assert session_id and json.loads(second.stdout)["session_id"] == session_id
    listed = session_list(qwen3tui_home)
    assert [(s["id"], s["message_count"]) for s in listed] == [(session_id, 4)]
    session = session_show(qwen3tui_home, session_id)
    assert session["title"] == "first question"
    messages = session["messages"]
    # Six tokens never finish a reply: it was cut off by max tokens, and says so.
    assert [(m["role"], m["status"]) for m in messages] == [
        ("user", "complete"),
        ("assistant", "length"),
    ] * 2
    assert [messages[0]["content"], messages[2]["content"]] == ["first question", "second question"]
    reply = messages[3]
    assert reply["thinking_enabled"] is True
    assert reply["usage"]["thinking_tokens"] + reply["usage"]["answer_tokens"] == 6
    assert (
        reply["thinking"] + reply["content"]
        == json.loads(second.stdout)["thinking"] + json.loads(second.stdout)["answer"]
    )


def test_a_session_can_be_named_and_no_save_records_nothing(tiny_checkpoint, qwen3tui_home):
    first = ask(qwen3tui_home, tiny_checkpoint, "--json", "--no-think", "one")
    session_id = json.loads(first.stdout)["session_id"]
    other = ask(qwen3tui_home, tiny_checkpoint, "--json", "--no-think", "two")
    assert json.loads(other.stdout)["session_id"] != session_id
    again = ask(
        qwen3tui_home, tiny_checkpoint, "--json", "--no-think", "--session", session_id[:8], "three"
    )
    assert again.returncode == 0, again.stderr
    assert [
        m["content"]
        for m in session_show(qwen3tui_home, session_id)["messages"]
        if m["role"] == "user"
    ] == ["one", "three"]
    assert session_show(qwen3tui_home, session_id)["messages"][1]["thinking_enabled"] is False
    unsaved = ask(qwen3tui_home, tiny_checkpoint, "--json", "--no-save", "four")
    assert unsaved.returncode == 0 and json.loads(unsaved.stdout)["session_id"] is None
    listed = session_list(qwen3tui_home)
    assert sum(s["message_count"] for s in listed) == 6


def test_a_killed_ask_leaves_the_flushed_partial_reply_and_continue_works(
    tiny_checkpoint, qwen3tui_home
):
    db = qwen3tui_home / "sessions.db"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qwen3tui",
            "ask",
            "--model",
            str(tiny_checkpoint),
            "--dtype",
            "float32",
            "--think",
            "--max-new-tokens",
            "100000",
            "--temperature",
            "1",
            "Write a very long essay",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "QWEN3TUI_HOME": str(qwen3tui_home)},
    )
    try:
        deadline = time.monotonic() + 120
        flushed = ""
        while not flushed and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            flushed = saved_reply_text(db)
        assert flushed, "no reply text was flushed before the deadline"
        assert proc.poll() is None, "ask ended before it could be killed"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    listed = session_list(qwen3tui_home)
    (session,) = listed
    user, reply = session_show(qwen3tui_home, session["id"])["messages"]
    assert (user["role"], user["content"]) == ("user", "Write a very long essay")
    assert (reply["role"], reply["status"]) == ("assistant", "interrupted")
    assert (reply["thinking"] + reply["content"]).startswith(flushed)

    resumed = ask(qwen3tui_home, tiny_checkpoint, "--json", "--continue", "Go on")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["session_id"] == session["id"]
    messages = session_show(qwen3tui_home, session["id"])["messages"]
    assert [(m["role"], m["status"]) for m in messages] == [
        ("user", "complete"),
        ("assistant", "interrupted"),
        ("user", "complete"),
        ("assistant", "length"),
    ]
    assert messages[1]["thinking"] + messages[1]["content"] == reply["thinking"] + reply["content"]
    assert messages[2]["content"] == "Go on"
