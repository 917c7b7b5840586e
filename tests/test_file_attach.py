"""Reading files to attach, finding `@path` in typed text, completing paths, and refusing what
the model cannot read, each in one line with the numbers."""

from __future__ import annotations

import io
import os
import subprocess

import pytest

from qwen3tui.file_attach import (
    AttachError,
    attach_typed,
    check_fits,
    complete_path,
    find_at_paths,
    read_attachment,
    stdin_is_piped,
    unescape_at,
)
from qwen3tui.store import Attachment, expand_prompt


def words(messages: list[dict[str, str]]) -> int:
    """A stand-in for `count_tokens`: one token per word."""
    return sum(len(m["content"].split()) for m in messages)


def test_a_text_file_is_read_with_its_size_and_lines(tmp_path):
    (tmp_path / "a.py").write_text("x = 'é'\ny = 2\n", encoding="utf-8")
    a = read_attachment(tmp_path / "a.py", name="a.py")
    assert a == Attachment(name="a.py", size=15, lines=2, text="x = 'é'\ny = 2\n")


def test_a_last_line_without_newline_counts_and_a_byte_order_mark_is_dropped(tmp_path):
    (tmp_path / "b.txt").write_bytes(b"\xef\xbb\xbfone\ntwo")
    a = read_attachment(tmp_path / "b.txt")
    assert (a.text, a.lines, a.size) == ("one\ntwo", 2, 10)


def test_a_binary_file_is_refused_with_where_its_nul_byte_is(tmp_path):
    (tmp_path / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00rest")
    with pytest.raises(AttachError) as err:
        read_attachment(tmp_path / "img.png", name="img.png")
    assert str(err.value) == (
        "cannot attach img.png: it is binary (a NUL byte at offset 8 of 14 bytes);"
        " only text files can be attached"
    )


def test_a_file_that_is_not_utf8_is_refused_with_the_byte_and_offset(tmp_path):
    (tmp_path / "latin.txt").write_bytes(b"caf\xe9 au lait")
    with pytest.raises(AttachError) as err:
        read_attachment(tmp_path / "latin.txt", name="latin.txt")
    assert str(err.value) == (
        "cannot attach latin.txt: it is not UTF-8 text (byte 0xe9 at offset 3 of 12 bytes)"
    )


def test_missing_files_and_directories_are_refused_in_one_line(tmp_path):
    with pytest.raises(AttachError, match="^cannot attach nope.txt: no such file$"):
        read_attachment(tmp_path / "nope.txt", name="nope.txt")
    (tmp_path / "sub").mkdir()
    with pytest.raises(AttachError, match="^cannot attach sub: it is a directory$"):
        read_attachment(tmp_path / "sub", name="sub")


def test_an_unreadable_file_is_refused_in_one_line(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    # Tests may run as root, who can read a chmod 0 file: the refusal is simulated.
    monkeypatch.setattr("builtins.open", denied)
    with pytest.raises(AttachError, match="^cannot attach secret.txt: permission denied$"):
        read_attachment(tmp_path / "secret.txt", name="secret.txt")


def test_at_paths_are_found_at_word_starts_and_not_in_email_addresses():
    text = "compare @src/a.py with @b.txt, then mail me@example.com about @src/a.py"
    assert find_at_paths(text) == ["src/a.py", "b.txt"]
    assert find_at_paths("Read @notes.md. Then (see @../c.txt)") == ["notes.md", "../c.txt"]


def test_a_double_at_is_a_literal_at_and_attaches_nothing():
    assert find_at_paths("ping @@alice") == []
    assert unescape_at("ping @@alice about @notes.md") == "ping @alice about @notes.md"


def test_typed_at_paths_are_read_relative_to_the_base_directory(tmp_path):
    (tmp_path / "notes.md").write_text("# Notes\n")
    [a] = attach_typed("summarise @notes.md please", tmp_path)
    assert (a.name, a.text) == ("notes.md", "# Notes\n")
    with pytest.raises(AttachError, match="^cannot attach missing.md: no such file$"):
        attach_typed("and @missing.md", tmp_path)


def test_a_file_that_fits_the_context_is_accepted():
    small = Attachment("a.txt", 10, 1, "one two three\n")
    check_fits("question", [small], words, context_length=100, max_new_tokens=10)


def test_a_file_larger_than_the_context_allows_is_refused_with_the_numbers():
    big = Attachment("big.txt", 4000, 1, "word " * 1000)
    text = "summarise this"
    file_tokens = words([{"role": "user", "content": expand_prompt(text, [big])}]) - 2
    with pytest.raises(AttachError) as err:
        # 1000 tokens of context keep 250 (a quarter, at most 1024) for the reply.
        check_fits(text, [big], words, context_length=1000, max_new_tokens=4096)
    assert str(err.value) == (
        f"cannot attach big.txt: {file_tokens:,} tokens, but only 748 tokens of the 1,000-token"
        " context are left for files in this message (the rest is the message itself and room"
        " for the reply)"
    )


def test_the_system_prompt_counts_against_the_room_for_files():
    file = Attachment("a.txt", 10, 1, "w " * 90)
    check_fits("q", [file], words, context_length=200, max_new_tokens=50)
    with pytest.raises(AttachError, match="only 48 tokens"):
        check_fits("q", [file], words, 200, 50, system="s " * 101)


def test_paths_complete_from_the_base_directory_with_directories_marked(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("")
    (tmp_path / "src" / "api.py").write_text("")
    (tmp_path / "setup.cfg").write_text("")
    (tmp_path / ".hidden").write_text("")
    assert complete_path("s", tmp_path) == ["setup.cfg", "src/"]
    assert complete_path("src/a", tmp_path) == ["src/api.py", "src/app.py"]
    assert complete_path("", tmp_path) == ["setup.cfg", "src/"]
    assert complete_path(".h", tmp_path) == [".hidden"]
    assert complete_path("nowhere/x", tmp_path) == []


def test_only_a_pipe_or_a_redirected_file_counts_as_piped_stdin(tmp_path):
    assert not stdin_is_piped(None)
    assert not stdin_is_piped(io.StringIO("a stand-in without a file descriptor"))
    with open(os.devnull) as null:
        assert not stdin_is_piped(null)
    (tmp_path / "f").write_text("x")
    with open(tmp_path / "f") as f:
        assert stdin_is_piped(f)
    p = subprocess.Popen(["true"], stdout=subprocess.PIPE)
    try:
        assert stdin_is_piped(p.stdout)
    finally:
        p.communicate()
