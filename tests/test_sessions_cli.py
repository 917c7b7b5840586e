"""`qwen3tui sessions ...` through the real argument parser (and once as a real process)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest
from store_helpers import add_reply

from qwen3tui.cli import main
from qwen3tui.store import LATEST_VERSION, SessionStore


@pytest.fixture
def home(qwen3tui_home):
    return qwen3tui_home


def make_session(question, answer, thinking="", title=None):
    with SessionStore.open() as store:
        s = store.create_session("Qwen/Qwen3-1.7B")
        store.add_user_message(s.id, question)
        add_reply(
            store,
            s.id,
            answer,
            thinking,
            budget=256,
            usage={"answer_tokens": 4},
            timings={"ttft_s": 0.1},
        )
        if title:
            store.rename_session(s.id, title)
        return s.id


def run_cli(capsys, *argv):
    code = main(["sessions", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_list_json_gives_sessions_most_recent_first(home, capsys):
    a = make_session("first question", "first answer")
    b = make_session("second question", "second answer")
    code, out, _ = run_cli(capsys, "list", "--json")
    assert code == 0
    listed = json.loads(out)
    assert [x["id"] for x in listed] == [b, a]
    assert set(listed[0]) == {"id", "title", "created", "updated", "model", "message_count"}
    assert (listed[0]["title"], listed[0]["message_count"]) == ("second question", 2)


def test_list_as_a_table_and_when_empty(home, capsys):
    assert run_cli(capsys, "list")[1].strip() == "No saved sessions."
    sid = make_session("how do tides work", "the moon")
    code, out, _ = run_cli(capsys, "list")
    assert code == 0 and sid[:8] in out and "how do tides work" in out
    assert run_cli(capsys)[1] == out  # `sessions` alone lists


def test_show_json_has_the_session_and_its_messages(home, capsys):
    sid = make_session("What is pi?", "About 3.14159", thinking="circle ratio")
    code, out, _ = run_cli(capsys, "show", sid[:6], "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["id"] == sid and shown["model"] == "Qwen/Qwen3-1.7B"
    user, reply = shown["messages"]
    assert (user["role"], user["content"]) == ("user", "What is pi?")
    assert (reply["role"], reply["content"], reply["thinking"], reply["status"]) == (
        "assistant",
        "About 3.14159",
        "circle ratio",
        "complete",
    )
    assert (reply["thinking_enabled"], reply["budget"], reply["usage"]) == (
        True,
        256,
        {"answer_tokens": 4},
    )
    assert reply["created"]


def test_show_prints_a_readable_transcript(home, capsys):
    sid = make_session("What is pi?", "About 3.14159", thinking="circle ratio")
    code, out, _ = run_cli(capsys, "show", sid)
    assert code == 0 and "What is pi?" in out and "About 3.14159" in out and "<details>" in out


def test_search_finds_answers_and_titles_but_thinking_only_with_the_flag(home, capsys):
    a = make_session("question", "the albatross answer", thinking="private kestrel")
    b = make_session("other", "nothing", title="Albatross trivia")
    code, out, _ = run_cli(capsys, "search", "albatross", "--json")
    found = json.loads(out)
    assert code == 0 and {x["id"] for x in found} == {a, b}
    assert all("[" in x["snippet"] and x["title"] for x in found)
    assert json.loads(run_cli(capsys, "search", "kestrel", "--json")[1]) == []
    (hit,) = json.loads(run_cli(capsys, "search", "kestrel", "--thinking", "--json")[1])
    assert (hit["id"], hit["matched"]) == (a, "thinking")
    code, out, _ = run_cli(capsys, "search", "albatross")
    assert a[:8] in out and b[:8] in out
    assert run_cli(capsys, "search", "zzzzqqq")[1].strip() == "No matches."


def test_export_json_then_import_round_trips(home, capsys, tmp_path):
    sid = make_session("Export me", "Exported", thinking="thoughts")
    target = tmp_path / "out.json"
    code, _, err = run_cli(capsys, "export", sid, "--format", "json", "-o", str(target))
    assert code == 0 and str(target) in err
    code, out, _ = run_cli(capsys, "import", str(target))
    new_id = out.strip()
    assert code == 0 and len(new_id) == 32 and new_id != sid
    with SessionStore.open() as store:
        original, copy = store.export_json(sid), store.export_json(new_id)
    for data in (original, copy):
        del data["session"]["id"]
    assert copy == original


def test_export_markdown_to_stdout(home, capsys):
    sid = make_session("Export me", "Exported", thinking="thoughts")
    code, out, _ = run_cli(capsys, "export", sid)
    assert code == 0 and out.startswith("# Export me") and "<summary>Thinking</summary>" in out


def test_rename_and_delete(home, capsys):
    sid = make_session("old title", "x")
    assert run_cli(capsys, "rename", sid[:8], "Brand", "new", "title")[0] == 0
    assert json.loads(run_cli(capsys, "list", "--json")[1])[0]["title"] == "Brand new title"
    code, _, err = run_cli(capsys, "delete", sid)  # stdin is not a terminal: needs --yes
    assert code == 2 and "--yes" in err and err.count("\n") == 1
    assert len(json.loads(run_cli(capsys, "list", "--json")[1])) == 1
    assert run_cli(capsys, "delete", sid, "--yes")[0] == 0
    assert json.loads(run_cli(capsys, "list", "--json")[1]) == []


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["show", "ffff"], "no session id starts with 'ffff'"),
        (["export", "nope"], "no session id starts with"),
        (["rename", "nope", "x"], "no session id starts with"),
        (["delete", "nope", "--yes"], "no session id starts with"),
        (["import", "/no/such/file.json"], "cannot read /no/such/file.json"),
        (["search", "*"], "search needs at least one word"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(home, capsys, argv, expected):
    make_session("q", "a")
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("qwen3tui: ") and expected in err and err.count("\n") == 1


def test_an_ambiguous_prefix_lists_the_candidates(home, capsys):
    shared = [f"c{n}" + "0" * 30 for n in range(1, 4)]  # fixed ids: the same test every run
    with SessionStore.open() as store:
        for session_id in [*shared, "d" + "0" * 31]:
            store.create_session("m", session_id=session_id)
    code, _, err = run_cli(capsys, "show", "c")
    assert code == 2 and "ambiguous" in err and err.count("\n") == 1
    assert all(i[:12] in err for i in shared) and "d000" not in err


def test_importing_a_file_that_is_not_an_export_fails_cleanly(home, capsys, tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    code, _, err = run_cli(capsys, "import", str(bad_json))
    assert code == 2 and "is not JSON" in err
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"hello": "world"}))
    code, _, err = run_cli(capsys, "import", str(wrong))
    assert code == 2 and "not a qwen3tui session export" in err and err.count("\n") == 1


def test_a_corrupt_database_is_reported_by_reading_commands_and_set_aside_by_writing(home, capsys):
    (home / "sessions.db").write_bytes(b"garbage" * 100)
    code, out, err = run_cli(capsys, "list", "--json")
    assert code == 2 and out == "" and "damaged" in err and err.count("\n") == 1
    assert [p.name for p in home.iterdir()] == ["sessions.db"]  # a read changes nothing
    with SessionStore.open() as store:  # what `qwen3tui`, `ask` and changing commands do
        assert "corrupt-" in store.warnings[0]
    (backup,) = [p for p in home.iterdir() if ".corrupt-" in p.name]
    assert backup.read_bytes() == b"garbage" * 100
    code, out, err = run_cli(capsys, "list", "--json")
    assert code == 0 and json.loads(out) == [] and err == ""


def test_a_newer_database_is_refused_and_left_alone(home, capsys):
    path = home / "sessions.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 3}")
    conn.close()
    before = path.read_bytes()
    code, out, err = run_cli(capsys, "list")
    assert code == 2 and out == "" and "newer qwen3tui" in err and err.count("\n") == 1
    assert path.read_bytes() == before


def test_changes_that_cannot_be_saved_fail_after_the_warning(capsys, monkeypatch):
    from test_store_faults import read_only_folder, unprivileged

    with read_only_folder() as folder:
        monkeypatch.setenv("QWEN3TUI_HOME", str(folder))
        with SessionStore.open() as store:
            sid = store.create_session("m").id
        before = (folder / "sessions.db").read_bytes()
        folder.chmod(0o555)
        with unprivileged():
            code, out, err = run_cli(capsys, "list", "--json")
            assert code == 0 and [x["id"] for x in json.loads(out)] == [sid]
            code, _, err = run_cli(capsys, "rename", sid, "new")
            assert code == 2
            assert err.splitlines()[-1].startswith("qwen3tui: the session was not renamed: ")
        assert (folder / "sessions.db").read_bytes() == before


@pytest.mark.slow
def test_the_installed_command_lists_sessions_as_json(home):
    sid = make_session("from a real process", "yes")
    env = {**os.environ, "QWEN3TUI_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-m", "qwen3tui", "sessions", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=home,
    )
    assert done.returncode == 0, done.stderr
    assert [x["id"] for x in json.loads(done.stdout)] == [sid]
    bad = subprocess.run(
        [sys.executable, "-m", "qwen3tui", "sessions", "show", "zz"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=home,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
