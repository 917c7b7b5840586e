"""Running `qwen3tui COMMAND …` inside the test process, as a script would see it run.

A real `python -m qwen3tui ask` costs seconds of torch import on 2 cores; most command-line tests
only need what the command prints, its exit code and what it saved, which `cli.main` gives here
in a fraction of that. Signals, a closed pipe, a killed process, the real entry point and other
process-level behaviour keep their real subprocess tests.

What a real process would print on stderr that does not pass through `sys.stderr` here is put
back: Python warnings shown under Python's own default filters, and log records that would reach
logging's last-resort handler. So "one line on stderr" still means one line.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from qwen3tui.cli import main


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def _text_stream() -> io.TextIOWrapper:
    """A stand-in for a piped stdout/stderr: not a terminal, no file descriptor, UTF-8."""
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", newline="\n", write_through=True)


def _read(stream: io.TextIOWrapper) -> str:
    return stream.buffer.getvalue().decode("utf-8")  # type: ignore[attr-defined]


def _python_default_warning_filters() -> None:
    """The filters a plain `python -m …` starts with (pytest shows more)."""
    warnings.resetwarnings()
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("default")


def run_cli(
    *args: str,
    home: Path,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
) -> Ran:
    """`qwen3tui ARGS…` with QWEN3TUI_HOME=home. `stdin` is piped in as bytes (as
    `subprocess.run(input=…)` would); None gives /dev/null, as CI's closed stdin does."""
    stdout, stderr = _text_stream(), _text_stream()
    if stdin is None:
        stdin_file: Any = open(os.devnull)  # closed below
    else:
        raw = tempfile.TemporaryFile()  # a redirected file: piped, as `< file` is
        raw.write(stdin)
        raw.seek(0)
        stdin_file = io.TextIOWrapper(raw, encoding="utf-8")
    last_resort = logging.StreamHandler(stderr)
    last_resort.setLevel(logging.WARNING)
    root = logging.getLogger()
    try:
        with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings(record=True) as caught:
            _python_default_warning_filters()
            mp.setenv("QWEN3TUI_HOME", str(home))
            for key, value in (env or {}).items():
                mp.setenv(key, value)
            mp.setattr("sys.stdin", stdin_file)
            mp.setattr("sys.stdout", stdout)
            mp.setattr("sys.stderr", stderr)
            root.addHandler(last_resort)
            try:
                code = main(list(args))
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (0 if not exit_.code else 2)
            finally:
                root.removeHandler(last_resort)
        shown = "".join(
            warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line)
            for w in caught
        )
    finally:
        stdin_file.close()
    return Ran(code, _read(stdout), _read(stderr) + shown)


def ask(*args: str, home: Path, stdin: bytes | None = None) -> Ran:
    return run_cli("ask", *args, home=home, stdin=stdin)


def session_list(home: Path) -> list[dict[str, Any]]:
    done = run_cli("sessions", "list", "--json", home=home)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def session_show(home: Path, session_id: str) -> dict[str, Any]:
    done = run_cli("sessions", "show", session_id, "--json", home=home)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
