"""`qwen3tui sessions` under hostile text, closed pipes, damaged files and bad imports.

Stored text never drives the terminal; a closed pipe ends quietly; read-only commands never
change the file; an import is checked whole before anything is written; an export never
clobbers a file half-way or without being asked.
"""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from qwen3tui.cli import main
from qwen3tui.store import SessionStore

HOSTILE_TITLE = "\x1b]0;PWNED\x07\x1b[2Jhi \x9b31m red"


@pytest.fixture
def home(qwen3tui_home: Path) -> Path:
    return qwen3tui_home


def make_session(text: str, title: str | None = None) -> str:
    with SessionStore.open() as store:
        s = store.create_session("Qwen/Qwen3-1.7B")
        store.add_user_message(s.id, text)
        if title is not None:
            store.rename_session(s.id, title)
        return s.id


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["sessions", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def raw_controls(text: str) -> list[str]:
    return [c for c in text if (ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F]


def session_count(home: Path) -> int:
    conn = sqlite3.connect(home / "sessions.db")
    try:
        return conn.execute("SELECT count(*) FROM sessions").fetchone()[0]
    finally:
        conn.close()


# -- item 6: what reaches the terminal ---------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["list"], ["list", "--json"], ["search", "question"], ["search", "question", "--json"]],
)
def test_listing_and_searching_never_print_a_control_sequence(home, capsys, argv):
    sid = make_session(f"{HOSTILE_TITLE} question", title=HOSTILE_TITLE)
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0 and sid[:8] in out
    assert raw_controls(out) == []
    if "--json" in argv:  # scripts still get the exact text
        assert json.loads(out)[0]["title"] == " ".join(HOSTILE_TITLE.split())
    else:
        assert "\u241b]0;PWNED\u2407" in out  # shown, not run


def test_show_never_prints_a_control_sequence(home, capsys):
    sid = make_session(f"ask \x1b[6n then \x1bP+q\x1b\\ done {HOSTILE_TITLE}")
    for argv in (["show", sid[:8]], ["show", sid[:8], "--json"]):
        code, out, _ = run_cli(capsys, *argv)
        assert code == 0 and "done" in out and raw_controls(out) == []


def test_export_to_a_terminal_is_neutralized_and_to_a_pipe_is_exact(home, capsys, monkeypatch):
    text = f"exact {HOSTILE_TITLE}"
    sid = make_session(text)
    code, out, _ = run_cli(capsys, "export", sid[:8])  # captured: not a terminal
    assert code == 0 and text in out
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, out, _ = run_cli(capsys, "export", sid[:8])
    assert code == 0 and "exact" in out and raw_controls(out) == []


def test_error_messages_quoting_typed_or_stored_text_are_neutralized(home, capsys):
    make_session("x")
    code, out, err = run_cli(capsys, "show", "\x1b[2J\x1b]0;t\x07")
    assert code == 2 and out == "" and err.count("\n") == 1 and raw_controls(err) == []


def test_a_closed_pipe_ends_the_real_command_quietly_with_status_141(home):
    with SessionStore.open() as store:
        for i in range(100):  # ~200 KB of JSON: more than a pipe holds, so writes must block
            s = store.create_session("m")
            store.rename_session(s.id, f"session {i} " + "long title " * 200)
    for argv in (["list", "--json"], ["list"], ["search", "session"]):
        child = subprocess.Popen(
            [sys.executable, "-m", "qwen3tui", "sessions", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=home,
        )
        assert child.stdout is not None and child.stderr is not None
        child.stdout.readline()  # like `head -1`: read a line, then go away
        child.stdout.close()
        err = child.stderr.read().decode()
        assert child.wait(timeout=120) == 141, err
        assert err == ""  # no traceback, no "Exception ignored"


# -- item 4: read-only commands never change the file ------------------------------------


@pytest.mark.parametrize("argv", [["list"], ["list", "--json"], ["search", "x"], ["show", "ab"]])
def test_a_damaged_file_is_reported_but_left_alone_by_reading_commands(home, capsys, argv):
    path = home / "sessions.db"
    path.write_bytes(b"garbage" * 100)
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == "" and "damaged" in err and err.count("\n") == 1
    assert sorted(p.name for p in home.iterdir()) == ["sessions.db"]
    assert path.read_bytes() == b"garbage" * 100


def test_a_damaged_search_index_is_rebuilt_and_every_session_listed(home, capsys):
    from test_store_damaged_index import checkpoint, pages_of, zero_pages

    ids = [make_session(f"otters {i}") for i in range(20)]
    checkpoint(home / "sessions.db")
    zero_pages(home / "sessions.db", pages_of(home / "sessions.db", ("search_index_data",)))
    code, out, err = run_cli(capsys, "list", "--json")
    assert code == 0 and sorted(s["id"] for s in json.loads(out)) == sorted(ids)
    assert "search index" in err and "rebuilt" in err and err.count("\n") == 1
    code, out, err = run_cli(capsys, "search", "otters", "--json")
    assert code == 0 and len(json.loads(out)) == 20 and err == ""
    assert [p.name for p in home.iterdir() if ".corrupt-" in p.name] == []


def test_reading_commands_create_no_store(home, capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0 and out == "No saved sessions.\n"
    assert list(home.iterdir()) == []


# -- item 5: import ------------------------------------------------------------------------


def export_text(home: Path, capsys) -> dict:
    sid = make_session("a question")
    code, out, _ = run_cli(capsys, "export", sid[:8], "--format", "json")
    assert code == 0
    return json.loads(out)


def with_settings(data: dict, **settings) -> dict:
    return {**data, "session": {**data["session"], "settings": settings}}


def with_message(data: dict, **fields) -> dict:
    first = {**data["session"]["messages"][0], **fields}
    return {**data, "session": {**data["session"], "messages": [first]}}


BAD_IMPORTS = {
    "max_tokens is a word": (
        lambda d: json.dumps(with_settings(d, max_tokens="many")),
        "settings.max_tokens",
    ),
    "NaN sampling": (
        lambda d: json.dumps(with_settings(d, sampling={"temperature": 0.5})).replace("0.5", "NaN"),
        "NaN",
    ),
    "infinite penalty": (
        lambda d: json.dumps(with_message(d, sampling={"presence_penalty": 1})).replace(
            '"presence_penalty": 1', '"presence_penalty": Infinity'
        ),
        "Infinity",
    ),
    "float budget": (lambda d: json.dumps(with_message(d, budget=1e30)), "budget"),
    "float thinking budget": (
        lambda d: json.dumps(with_settings(d, thinking_budget=1e30)),
        "settings.thinking_budget",
    ),
    "huge integer budget": (lambda d: json.dumps(with_message(d, budget=10**30)), "budget"),
    "string top_k": (
        lambda d: json.dumps(with_settings(d, sampling={"top_k": "20"})),
        "sampling.top_k",
    ),
    "lone surrogate": (
        lambda d: json.dumps(with_message(d, content="ok")).replace('"ok"', '"\\ud800"'),
        "content",
    ),
    "lone surrogate in a key": (
        lambda d: json.dumps(with_message(d, usage={"k": 1})).replace('"k"', '"\\udfff"'),
        "usage",
    ),
    "100k-deep nesting": (
        lambda d: json.dumps(with_message(d, usage={"deep": "HOLE"})).replace(
            '"HOLE"', "[" * 100_000 + "]" * 100_000
        ),
        "nested too deeply",
    ),
    "100-deep nesting": (
        lambda d: json.dumps(with_message(d, timings={"deep": "HOLE"})).replace(
            '"HOLE"', "[" * 100 + "]" * 100
        ),
        "levels deep",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_IMPORTS))
def test_a_bad_import_is_one_line_and_writes_nothing(home, capsys, tmp_path, case):
    mangle, says = BAD_IMPORTS[case]
    data = export_text(home, capsys)
    before = session_count(home)
    bad = tmp_path / "bad.json"
    bad.write_text(mangle(data), encoding="utf-8")
    code, out, err = run_cli(capsys, "import", str(bad))
    assert code == 2 and out == "" and err.count("\n") == 1 and says in err, err
    assert session_count(home) == before


def test_an_import_that_is_not_utf8_is_one_line(home, capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"format": "caf\xe9"}')
    code, out, err = run_cli(capsys, "import", str(bad))
    assert code == 2 and out == "" and "not UTF-8" in err and err.count("\n") == 1


def test_a_good_import_prints_the_new_id_and_saves_it(home, capsys, tmp_path):
    data = export_text(home, capsys)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(with_settings(data, max_tokens=512, sampling={"top_p": 0.9})))
    code, out, _ = run_cli(capsys, "import", str(good))
    assert code == 0
    with SessionStore.open() as store:
        assert store.get_session(out.strip()).settings["sampling"] == {"top_p": 0.9}


def test_an_import_into_a_store_that_cannot_be_written_says_nothing_was_saved(capsys, monkeypatch):
    from test_store_faults import read_only_folder, unprivileged

    with read_only_folder() as folder:
        monkeypatch.setenv("QWEN3TUI_HOME", str(folder))
        sid = make_session("q")
        code, out, _ = run_cli(capsys, "export", sid[:8], "--format", "json")
        export = folder.parent / "e.json"  # readable by the unprivileged user
        export.write_text(out)
        export.chmod(0o644)
        before = (folder / "sessions.db").read_bytes()
        folder.chmod(0o555)
        with unprivileged():
            code, out, err = run_cli(capsys, "import", str(export))
        assert code == 2 and out == ""  # no id for a session that does not exist
        assert err.splitlines()[-1].startswith("qwen3tui: nothing was imported: ")
        assert (folder / "sessions.db").read_bytes() == before


# -- item 5: export ------------------------------------------------------------------------


def test_export_refuses_to_replace_a_file_unless_forced(home, capsys, tmp_path):
    sid = make_session("exported text")
    target = tmp_path / "existing.md"
    target.write_text("precious")
    code, _, err = run_cli(capsys, "export", sid[:8], "-o", str(target))
    assert code == 2 and "--force" in err and err.count("\n") == 1
    assert target.read_text() == "precious"
    code, _, _ = run_cli(capsys, "export", sid[:8], "-o", str(target), "--force")
    assert code == 0 and "exported text" in target.read_text()


def test_export_never_writes_through_a_symbolic_link(home, capsys, tmp_path):
    sid = make_session("exported text")
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("not yours to change")
    link = tmp_path / "out.md"
    link.symlink_to(elsewhere)
    code, _, err = run_cli(capsys, "export", sid[:8], "-o", str(link))
    assert code == 2 and "symbolic link" in err
    code, _, _ = run_cli(capsys, "export", sid[:8], "-o", str(link), "--force")
    assert code == 0 and elsewhere.read_text() == "not yours to change"
    assert "exported text" in link.read_text()


def test_an_export_that_cannot_be_written_whole_leaves_the_old_file(home, tmp_path):
    """The real command under a file-size limit: the write fails part-way, as on a full disk."""
    sid = make_session("long answer " * 20_000)  # a ~240 KB export
    target = tmp_path / "existing.md"
    old = "".join(f"line {i}\n" for i in range(1000))
    target.write_text(old)

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (128 * 1024, 128 * 1024))

    done = subprocess.run(
        [sys.executable, "-m", "qwen3tui", "sessions", "export", sid, "-o", str(target), "--force"],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit_file_size,
        env={**os.environ},
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr and str(target) in done.stderr
    assert target.read_text() == old
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "home") == ["existing.md"]
