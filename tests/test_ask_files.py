"""`qwen3tui ask -f FILE` and `cat FILE | qwen3tui ask "question"` (through `cli.main`, stdin a
redirected file: tests/cli_helpers.py): the file reaches the model (the prompt grows by its
tokens), is saved with the message apart from the typed text, and what cannot be attached is
refused in one line before anything is saved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import Ran, run_cli, session_show

from qwen3tui.engine.tokenizer import Qwen3Tokenizer

FILE_TEXT = "def walrus():\n    return 'tusks'\n" * 5


def ask(home: Path, checkpoint: Path, *args: str, stdin: bytes | None = None) -> Ran:
    return run_cli(
        "ask", "--model", str(checkpoint), "--dtype", "float32", "--max-new-tokens", "2",
        "--seed", "3", "--no-think", "--json", *args,
        home=home, stdin=stdin if stdin is not None else b"",
    )  # fmt: skip


def prompt_tokens(done: Ran) -> int:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["usage"]["prompt_tokens"]


@pytest.fixture(scope="module")
def file_tokens(shared_dir: Path) -> int:
    return len(Qwen3Tokenizer.from_dir(shared_dir).encode(FILE_TEXT))


def test_ask_with_files_sends_them_and_saves_them_apart(tiny_checkpoint, tmp_path, file_tokens):
    (tmp_path / "walrus.py").write_text(FILE_TEXT)
    (tmp_path / "notes.txt").write_text("short note\n")
    plain = prompt_tokens(ask(tmp_path, tiny_checkpoint, "--no-save", "What is this?"))
    done = ask(tmp_path, tiny_checkpoint, "-f", str(tmp_path / "walrus.py"), "What is this?")
    # The file's text, plus its header line and fence, reach the model.
    assert prompt_tokens(done) > plain + file_tokens
    message = session_show(tmp_path, json.loads(done.stdout)["session_id"])["messages"][0]
    assert message["content"] == "What is this?"
    assert [(a["name"], a["size"], a["lines"], a["text"]) for a in message["attachments"]] == [
        (str(tmp_path / "walrus.py"), len(FILE_TEXT), 10, FILE_TEXT)
    ]
    two = ask(tmp_path, tiny_checkpoint, "--no-save", "-f", str(tmp_path / "walrus.py"),
              "--file", str(tmp_path / "notes.txt"), "What is this?")  # fmt: skip
    assert prompt_tokens(two) > prompt_tokens(done)


def test_piped_stdin_is_joined_with_the_prompt_as_a_file(tiny_checkpoint, tmp_path, file_tokens):
    plain = prompt_tokens(ask(tmp_path, tiny_checkpoint, "--no-save", "Explain."))
    done = ask(tmp_path, tiny_checkpoint, "Explain.", stdin=FILE_TEXT.encode())
    assert prompt_tokens(done) > plain + file_tokens
    message = session_show(tmp_path, json.loads(done.stdout)["session_id"])["messages"][0]
    assert message["content"] == "Explain."
    assert [(a["name"], a["text"]) for a in message["attachments"]] == [("stdin", FILE_TEXT)]


def test_stdin_alone_is_still_the_prompt(tiny_checkpoint, tmp_path):
    done = ask(tmp_path, tiny_checkpoint, stdin=b"Explain walruses.")
    message = session_show(tmp_path, json.loads(done.stdout)["session_id"])["messages"][0]
    assert (message["content"], message["attachments"]) == ("Explain walruses.", [])


def test_a_binary_file_is_refused_in_one_line_before_anything_is_saved(tiny_checkpoint, tmp_path):
    (tmp_path / "blob.bin").write_bytes(b"ab\x00cd")
    done = ask(tmp_path, tiny_checkpoint, "-f", str(tmp_path / "blob.bin"), "What is this?")
    assert done.returncode == 2
    assert done.stderr == (
        f"qwen3tui: cannot attach {tmp_path / 'blob.bin'}: it is binary (a NUL byte at offset 2"
        " of 5 bytes); only text files can be attached\n"
    )
    assert not (tmp_path / "sessions.db").exists()  # the store was not even opened


def test_a_file_larger_than_the_context_is_refused_with_the_numbers(tiny_checkpoint, tmp_path):
    (tmp_path / "big.txt").write_text("walrus tusk ivory " * 400)
    done = ask(tmp_path, tiny_checkpoint, "--no-save", "--context", "256",
               "-f", str(tmp_path / "big.txt"), "Summarise.")  # fmt: skip
    assert done.returncode == 2
    err = done.stderr
    assert err.startswith(f"qwen3tui: cannot attach {tmp_path / 'big.txt'}: ")
    assert "tokens of the 256-token context are left for files" in err
    assert err.count("\n") == 1
