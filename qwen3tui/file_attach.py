"""Attaching text files to a message: reading them, finding `@path` in what was typed, and
refusing what the model cannot read (binary, unreadable, larger than the context) in one line
with the numbers.

The store keeps an `Attachment` and knows how the model reads one (`expand_prompt`); this module
is where a file on disk becomes one. The TUI's `/file` and `@path` and `ask -f` all use it.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Sequence
from pathlib import Path

from qwen3tui.store.attachments import Attachment, count_lines, expand_prompt, human_size, plural

# A file is read whole before any other check; this keeps a mistaken `@/dev/zero` or a huge log
# from filling memory. No Qwen3 context holds anywhere near this much text.
MAX_READ_BYTES = 16 * 1024 * 1024
# `@path` at the start or after whitespace (so an e-mail address is not a path); `@@` is a
# literal "@".
_AT_PATH = re.compile(r"(?<!\S)@(@?)(\S+)")
# Punctuation that ends a sentence or a clause after "@path" is not part of the path.
_TRAILING_PUNCTUATION = ".,;:!?)]}'\""


class AttachError(Exception):
    """A file that cannot be attached; the message is one line naming it and the numbers."""


def read_attachment(path: str | os.PathLike[str], name: str | None = None) -> Attachment:
    """Read `path` as a UTF-8 text file; AttachError (one line) when it is not one."""
    shown = name if name is not None else str(path)
    p = Path(os.path.expanduser(path))
    try:
        if p.is_dir():
            raise AttachError(f"cannot attach {shown}: it is a directory")
        with open(p, "rb") as f:
            raw = f.read(MAX_READ_BYTES + 1)
    except FileNotFoundError:
        raise AttachError(f"cannot attach {shown}: no such file") from None
    except PermissionError:
        raise AttachError(f"cannot attach {shown}: permission denied") from None
    except OSError as err:
        raise AttachError(f"cannot attach {shown}: {err.strerror or err}") from None
    return attachment_from_bytes(raw, shown)


def attachment_from_bytes(raw: bytes, shown: str) -> Attachment:
    """`raw` as an attachment named `shown`, if it is UTF-8 text of a size a context can hold."""
    if len(raw) > MAX_READ_BYTES:
        raise AttachError(
            f"cannot attach {shown}: it is over {human_size(MAX_READ_BYTES)}, far more than"
            " any context holds"
        )
    if b"\0" in raw:
        raise AttachError(
            f"cannot attach {shown}: it is binary (a NUL byte at offset {raw.index(0):,}"
            f" of {len(raw):,} bytes); only text files can be attached"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise AttachError(
            f"cannot attach {shown}: it is not UTF-8 text (byte 0x{raw[err.start]:02x} at"
            f" offset {err.start:,} of {len(raw):,} bytes)"
        ) from None
    text = text.removeprefix("\ufeff")  # a byte-order mark is not part of the text
    return Attachment(name=shown, size=len(raw), lines=count_lines(text), text=text)


def find_at_paths(text: str) -> list[str]:
    """The paths named as `@path` in what the user typed, in order, without repeats."""
    out: list[str] = []
    for match in _AT_PATH.finditer(text):
        if match.group(1):  # "@@x" is the text "@x"
            continue
        path = match.group(2).rstrip(_TRAILING_PUNCTUATION)
        if path and path not in out:
            out.append(path)
    return out


def unescape_at(text: str) -> str:
    """What is sent for `@@x`: the text `@x`."""
    return _AT_PATH.sub(lambda m: "@" + m.group(2) if m.group(1) else m.group(0), text)


def attach_typed(text: str, base: Path | None = None) -> list[Attachment]:
    """Read every `@path` in `text` (relative to `base`, default the current directory)."""
    root = base or Path.cwd()
    return [read_attachment(root / os.path.expanduser(p), name=p) for p in find_at_paths(text)]


def check_fits(
    text: str,
    attachments: Sequence[Attachment],
    count: Callable[[list[dict[str, str]]], int],
    context_length: int,
    max_new_tokens: int,
    system: str | None = None,
) -> None:
    """Refuse (AttachError, one line with the numbers) files the context cannot hold.

    `count` is the engine's `count_tokens` for a list of messages. The room the engine keeps
    for the reply is the one `Engine._prompt_limit` keeps, so a file accepted here is not then
    refused by the engine: the system prompt, the typed text and the files must fit in it
    together (older turns are dropped first, so they do not count).
    """
    if not attachments:
        return
    limit = context_length - min(max_new_tokens, 1024, context_length // 4)
    head = [{"role": "system", "content": system}] if system else []
    without = count([*head, {"role": "user", "content": text}])
    whole = count([*head, {"role": "user", "content": expand_prompt(text, attachments)}])
    if whole <= limit:
        return
    files = ", ".join(a.name for a in attachments)
    room = max(limit - without, 0)
    raise AttachError(
        f"cannot attach {files}: {plural(whole - without, 'token')}, but only"
        f" {plural(room, 'token')} of the {context_length:,}-token context are left for files"
        " in this message (the rest is the message itself and room for the reply)"
    )


def complete_path(fragment: str, base: Path | None = None) -> list[str]:
    """Tab completion after `@`: the paths that start with `fragment`, directories ending in
    "/", sorted; hidden entries only when the fragment's last part starts with a dot."""
    root = base or Path.cwd()
    head, _, tail = fragment.rpartition("/")
    directory = root / os.path.expanduser(head) if head else root
    if fragment.startswith("/"):
        directory = Path(head or "/")
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return []
    out = []
    for entry in entries:
        if not entry.name.startswith(tail) or (entry.name.startswith(".") and not tail[:1] == "."):
            continue
        prefix = f"{head}/" if head or fragment.startswith("/") else ""
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        out.append(f"{prefix}{entry.name}{'/' if is_dir else ''}")
    return out


def common_prefix(options: list[str]) -> str:
    return os.path.commonprefix(options) if options else ""


def stdin_is_piped(stream: object) -> bool:
    """True when `stream` is a pipe or a redirected file (`cat f | …`, `… < f`): never a
    terminal, /dev/null, or a test's stand-in without a file descriptor."""
    try:
        if stream is None or stream.isatty():  # type: ignore[attr-defined]
            return False
        mode = os.fstat(stream.fileno()).st_mode  # type: ignore[attr-defined]
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is both
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode)
