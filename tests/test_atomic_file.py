"""A written file is whole or absent; existing files and links are replaced only when asked."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from qwen3tui.atomic_file import TargetExistsError, write_atomically


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_new_file_gets_the_text(tmp_path: Path) -> None:
    write_atomically(tmp_path / "out.md", "héllo\n")
    assert (tmp_path / "out.md").read_text(encoding="utf-8") == "héllo\n"
    write_atomically(tmp_path / "out.bin", b"\x00\x01")
    assert (tmp_path / "out.bin").read_bytes() == b"\x00\x01"
    assert leftovers(tmp_path) == []


def test_a_new_file_gets_the_usual_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_atomically(tmp_path / "out.md", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "out.md").stat().st_mode & 0o777 == 0o644


def test_an_existing_file_is_kept_unless_overwrite_is_asked(tmp_path: Path) -> None:
    target = tmp_path / "out.md"
    target.write_text("precious")
    with pytest.raises(TargetExistsError) as caught:
        write_atomically(target, "new")
    assert str(target) in str(caught.value) and "\n" not in str(caught.value)
    assert target.read_text() == "precious" and leftovers(tmp_path) == []
    write_atomically(target, "new", overwrite=True)
    assert target.read_text() == "new" and leftovers(tmp_path) == []


def test_a_symbolic_link_is_never_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("not yours to change")
    link = tmp_path / "out.md"
    link.symlink_to(elsewhere)
    with pytest.raises(TargetExistsError, match="symbolic link"):
        write_atomically(link, "new")
    write_atomically(link, "new", overwrite=True)
    assert elsewhere.read_text() == "not yours to change"  # the link was replaced, not followed
    assert not link.is_symlink() and link.read_text() == "new"


def test_a_dangling_link_is_refused_too(tmp_path: Path) -> None:
    link = tmp_path / "out.md"
    link.symlink_to(tmp_path / "missing" / "target")
    with pytest.raises(TargetExistsError):
        write_atomically(link, "new")


def test_a_folder_or_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError) as caught:
        write_atomically(tmp_path, "x")
    assert "folder" in str(caught.value)
    with pytest.raises(FileNotFoundError) as caught:
        write_atomically(tmp_path / "no" / "such" / "dir.md", "x")
    assert "dir.md" in str(caught.value) and "\n" not in str(caught.value)


def test_a_write_that_fails_midway_leaves_the_old_file_whole(tmp_path: Path) -> None:
    """A file-size limit in a child process fails the write after part of it, as a full disk
    does (Python ignores SIGXFSZ, so the write raises instead of killing the process)."""
    target = tmp_path / "existing.md"
    old = "".join(f"line {i} of the old file\n" for i in range(1000))
    target.write_text(old)
    script = textwrap.dedent(
        f"""
        import resource, sys
        from qwen3tui.atomic_file import write_atomically
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
        try:
            write_atomically({str(target)!r}, "new text\\n" * 100_000, overwrite=True)
        except OSError as err:
            print(err)
            sys.exit(3)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 3, result.stderr
    assert str(target) in result.stdout and result.stdout.count("\n") == 1
    assert target.read_text() == old
    assert leftovers(tmp_path) == []
