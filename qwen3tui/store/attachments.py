"""Files attached to a user's message: what is saved, the chip that shows one, the prompt text.

A message keeps what the user typed and its attachments apart; the model reads both joined by
`expand_prompt`, which is also how a saved session is given back to the model, so a reopened
conversation reads to it exactly as it did when the message was sent.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from typing import Any

# Language tags for the fence, by extension: the tag tells the model (and a Markdown viewer)
# how to read the block. Anything else gets a plain fence.
_LANGUAGES = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript",
    ".ts": "typescript", ".tsx": "tsx", ".jsx": "jsx", ".rs": "rust", ".go": "go",
    ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".hpp": "cpp", ".cxx": "cpp",
    ".java": "java", ".kt": "kotlin", ".swift": "swift", ".rb": "ruby", ".php": "php",
    ".cs": "csharp", ".scala": "scala", ".lua": "lua", ".r": "r", ".jl": "julia",
    ".sh": "bash", ".bash": "bash", ".zsh": "zsh", ".fish": "fish", ".ps1": "powershell",
    ".sql": "sql", ".html": "html", ".htm": "html", ".css": "css", ".scss": "scss",
    ".xml": "xml", ".json": "json", ".jsonl": "json", ".yaml": "yaml", ".yml": "yaml",
    ".toml": "toml", ".ini": "ini", ".cfg": "ini", ".md": "markdown", ".rst": "rst",
    ".tex": "latex", ".csv": "csv", ".diff": "diff", ".patch": "diff", ".txt": "text",
    ".dockerfile": "dockerfile", ".mk": "makefile", ".cu": "cuda", ".tcss": "css",
}  # fmt: skip
_NAMED = {"dockerfile": "dockerfile", "makefile": "makefile", "cmakelists.txt": "cmake"}


@dataclass(frozen=True)
class Attachment:
    """One text file as it was attached: its name as given, its size in bytes, its text."""

    name: str
    size: int
    lines: int
    text: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def chip(self) -> str:
        """The compact line shown in the message: name, size, lines."""
        return f"[{self.name} · {human_size(self.size)} · {plural(self.lines, 'line')}]"


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def human_size(size: int) -> str:
    if size < 1000:
        return plural(size, "byte")
    value = size / 1000
    for unit in ("KB", "MB"):
        if value < 1000:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def count_lines(text: str) -> int:
    """Lines as an editor shows them: a last line without a newline still counts."""
    if not text:
        return 0
    return text.count("\n") + (0 if text.endswith("\n") else 1)


def language_for(name: str) -> str:
    base = os.path.basename(name).lower()
    if base in _NAMED:
        return _NAMED[base]
    return _LANGUAGES.get(os.path.splitext(base)[1], "")


def fence_for(text: str) -> str:
    """A backtick fence longer than any backtick run in `text`."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def fenced_block(attachment: Attachment) -> str:
    """One file for the model: a header line naming it, then its text in a fenced code block.

    Why this shape: Qwen3 was trained on a great deal of Markdown, where a named file followed
    by a fenced block with a language tag is the usual way code is quoted, so it reads the block
    as the file's verbatim content and can refer to it by name. The fence is one backtick longer
    than the longest backtick run in the file, so a file that itself contains ``` (a README)
    cannot close the block early.
    """
    fence = fence_for(attachment.text)
    body = attachment.text if attachment.text.endswith("\n") else attachment.text + "\n"
    header = (
        f"File: {attachment.name} ({human_size(attachment.size)},"
        f" {plural(attachment.lines, 'line')})"
    )
    return f"{header}\n{fence}{language_for(attachment.name)}\n{body}{fence}"


def expand_prompt(text: str, attachments: list[Attachment] | tuple[Attachment, ...]) -> str:
    """What the model reads for a message: the files first, then what the user typed.

    The files come before the question because models answer long-document questions better
    with the question last, next to where the answer starts.
    """
    if not attachments:
        return text
    blocks = "\n\n".join(fenced_block(a) for a in attachments)
    return f"{blocks}\n\n{text}" if text.strip() else blocks


def attachments_from_json(value: Any) -> list[Attachment]:
    """Attachments as saved (a JSON list of objects); anything malformed is left out."""
    out: list[Attachment] = []
    if not isinstance(value, list):
        return out
    for item in value:
        try:
            out.append(attachment_from_dict(item))
        except ValueError:
            continue
    return out


def attachment_from_dict(item: Any) -> Attachment:
    """One attachment from its saved form; ValueError names what is wrong."""
    if not isinstance(item, dict):
        raise ValueError("an attachment must be an object")
    for key, kind in (("name", str), ("size", int), ("lines", int), ("text", str)):
        value = item.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"an attachment's {key!r} must be {kind.__name__}")
        if kind is int and value < 0:
            raise ValueError(f"an attachment's {key!r} must not be negative")
    if not item["name"].strip():
        raise ValueError("an attachment's 'name' must not be empty")
    return Attachment(item["name"], item["size"], item["lines"], item["text"])
