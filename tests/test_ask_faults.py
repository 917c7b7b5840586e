"""`qwen3tui ask` under bad input and faults: one line and the right exit code, nothing lost."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import run_cli, session_list, session_show

from qwen3tui.cli import main


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value", "said"),
    [
        ("--top-p", "0", "top_p = 0 is not allowed: use a number > 0 and ≤ 1"),
        ("--top-p", "-1", "top_p = -1 is not allowed"),
        ("--top-p", "2", "top_p = 2 is not allowed"),
        ("--min-p", "5", "min_p = 5 is not allowed: use a number from 0 to 1"),
        ("--temperature", "nan", "temperature = nan is not allowed: use a number ≥ 0"),
        ("--temperature", "-1", "temperature = -1 is not allowed"),
        ("--top-k", "-3", "top_k = -3 is not allowed: use a whole number ≥ 0"),
        ("--presence-penalty", "nan", "presence_penalty = nan is not allowed"),
        ("--presence-penalty", "1e308", "presence_penalty = 1e308 is not allowed"),
        ("--seed", "99999999999999999999999", "seed = 99999999999999999999999 is not allowed"),
        ("--max-new-tokens", "0", "max_tokens = 0 is not allowed: use a whole number ≥ 1"),
        ("--budget", "-5", "thinking_budget = -5 is not allowed"),
    ],
)
def test_an_out_of_range_value_is_one_line_exit_2_and_nothing_is_saved(
    flag, value, said, qwen3tui_home, capsys
):
    code, err = run_main(["ask", "--model", "/nowhere", flag, value, "hi"], capsys)
    assert code == 2
    assert err.count("\n") == 1 and said in err and err.startswith("qwen3tui ask: ")
    assert (
        not (qwen3tui_home / "data" / "sessions.db").exists() or _session_count(qwen3tui_home) == 0
    )


def _session_count(home: Path) -> int:
    dbs = list(home.rglob("sessions.db"))
    if not dbs:
        return 0
    with sqlite3.connect(dbs[0]) as conn:
        return conn.execute("SELECT count(*) FROM sessions").fetchone()[0]


def test_stdin_that_is_not_utf8_is_one_line_and_no_empty_session(
    qwen3tui_home, capsys, monkeypatch
):
    stdin = io.TextIOWrapper(io.BytesIO(b"caf\xe9 au lait"), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", stdin)
    code, err = run_main(["ask", "--model", "/nowhere"], capsys)
    assert code == 2
    assert err == (
        "qwen3tui: stdin is not UTF-8 text (byte 0xe9 at offset 3); convert it first, e.g."
        " with iconv.\n"
    )
    assert _session_count(qwen3tui_home) == 0


def ask_process(home: Path, checkpoint: Path, *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "qwen3tui", "ask", "--model", str(checkpoint),
         "--dtype", "float32", "--seed", "5", *args],
        env={**os.environ, "QWEN3TUI_HOME": str(home)},
        **popen,
    )  # fmt: skip


def in_process_ask(home: Path, checkpoint: Path, *args: str):
    """The same command through `cli.main` here, where no real process is needed."""
    return run_cli(
        "ask", "--model", str(checkpoint), "--dtype", "float32", "--seed", "5", *args, home=home
    )


def saved_session(home: Path) -> dict:
    (session,) = session_list(home)
    return session_show(home, session["id"])


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_save_every_word_and_mark_the_reply_interrupted(
    signum, code, tiny_checkpoint, tmp_path
):
    proc = ask_process(
        tmp_path, tiny_checkpoint, "--no-think", "--max-new-tokens", "100000", "Write forever",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        streamed = b""
        while len(streamed) < 40:  # the reply is streaming
            chunk = os.read(proc.stdout.fileno(), 4096)
            assert chunk, proc.stderr.read().decode()
            streamed += chunk
        proc.send_signal(signum)
        rest, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == code, err.decode()
    answer = (streamed + rest).decode()
    user, reply = saved_session(tmp_path)["messages"]
    assert user["content"] == "Write forever"
    assert reply["status"] == "interrupted"
    assert reply["content"] == answer.removesuffix("\n")  # every word shown is saved


@pytest.mark.slow
def test_a_closed_pipe_ends_ask_quietly_and_keeps_the_reply(tiny_checkpoint, tmp_path):
    proc = ask_process(
        tmp_path, tiny_checkpoint, "--no-think", "--max-new-tokens", "100000", "Write forever",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        first = proc.stdout.read(20)  # like `| head -c 20`
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait(timeout=120)
    finally:
        proc.kill()
    assert len(first) == 20
    assert proc.returncode == 141 and b"Traceback" not in err, err.decode()
    reply = saved_session(tmp_path)["messages"][1]
    assert reply["status"] == "interrupted" and reply["content"].encode().startswith(first)


@pytest.mark.slow
def test_a_store_locked_by_another_process_is_waited_for_and_nothing_is_lost(
    tiny_checkpoint, tmp_path
):
    first = in_process_ask(tmp_path, tiny_checkpoint, "--max-new-tokens", "4", "one")
    assert first.returncode == 0, first.stderr
    db = next(tmp_path.rglob("sessions.db"))
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # as a large `sessions import` elsewhere would
    second = ask_process(
        tmp_path, tiny_checkpoint, "--max-new-tokens", "4", "--continue", "two",
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = second.stderr.readline()
        assert "waiting for the session store" in line, line
        time.sleep(0.2)  # still waiting: holding the lock longer changes nothing
        assert second.poll() is None
        holder.execute("COMMIT")
        holder.close()
        _, err = second.communicate(timeout=300)
    finally:
        second.kill()
    assert second.returncode == 0, err
    messages = saved_session(tmp_path)["messages"]
    assert [(m["role"], m["content"][:3]) for m in messages][::2] == [
        ("user", "one"),
        ("user", "two"),
    ]
    assert len(messages) == 4


def test_the_prompt_is_saved_before_the_model_loads(qwen3tui_home, capsys):
    code, err = run_main(["ask", "--model", str(qwen3tui_home / "no-model-here"), "kept?"], capsys)
    assert code == 2 and err.count("\n") == 1
    from qwen3tui.store import SessionStore

    with SessionStore.open(next(qwen3tui_home.rglob("sessions.db"))) as store:
        (summary,) = store.list_sessions()
        assert [m.content for m in store.get_session(summary.id).messages] == ["kept?"]


def _disk_full() -> None:
    """In the child: no file may grow (as on a full disk), and that is an error, not a kill."""
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1, 1))


@pytest.mark.slow
def test_an_answer_that_cannot_be_saved_says_so_and_exits_3(tiny_checkpoint, tmp_path):
    first = in_process_ask(tmp_path, tiny_checkpoint, "--max-new-tokens", "3", "one")
    assert first.returncode == 0, first.stderr
    second = ask_process(
        tmp_path, tiny_checkpoint, "--max-new-tokens", "3", "--json", "--continue", "two",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_disk_full,
    )  # fmt: skip
    out, err = second.communicate(timeout=300)
    assert second.returncode == 3, err
    assert json.loads(out)["saved"] is False and json.loads(out)["answer"] is not None
    assert err.strip().splitlines()[-1].startswith("qwen3tui: not saved: ")
    assert "Traceback" not in err
    assert len(saved_session(tmp_path)["messages"]) == 2  # nothing claimed that is not there


def test_model_text_bound_for_a_terminal_cannot_drive_it(monkeypatch, capsys):
    from qwen3tui.ask import _Output
    from qwen3tui.engine.events import AnswerDelta

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    out = _Output(as_json=False)
    out.stream(iter([AnswerDelta("\x1b]0;PWNED\x07\x1b[2Jhi\tthere\n")]))
    shown = screen.getvalue()
    assert "\x1b" not in shown and "\x07" not in shown
    assert shown.startswith("␛]0;PWNED␇␛[2Jhi\tthere\n")
