"""The served model's own chat template (and tokenizer, for counting), read here without weights.

The client-side thinking budget renders prompts itself, so it needs the template the server's
model was trained with: from a directory the user names, the Hugging Face cache, a download of
the tokenizer files only, or, failing all of those, the built-in Qwen3 rendering.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from qwen3tui.engine.chat_template import ChatTemplate
from qwen3tui.engine.errors import EngineError
from qwen3tui.engine.tokenizer import Qwen3Tokenizer

TOKENIZER_FILES = [
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
    "chat_template.jinja",
]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class LocalPrompt:
    template: ChatTemplate
    tokenizer: Qwen3Tokenizer | None  # None: token counts are the server's, or estimates
    source: str  # where they came from, for messages


def load_local_prompt(
    tokenizer_dir: str | None, candidates: list[str], download: bool = True
) -> LocalPrompt:
    """From `tokenizer_dir` when given (errors are the user's to fix), else the first of the
    `candidates` (served model names, checkpoint paths) found locally, in the Hugging Face cache
    or, with `download`, on the Hub; else the built-in Qwen3 template."""
    if tokenizer_dir:
        folder = Path(tokenizer_dir).expanduser()
        if not folder.is_dir():
            raise EngineError(
                f"the tokenizer directory {tokenizer_dir} does not exist.",
                "Point it at a folder with the model's tokenizer.json and tokenizer_config.json.",
            )
        return _from_dir(folder)
    for name in candidates:
        folder = _find(name, download)
        if folder is not None:
            try:
                return _from_dir(folder)
            except EngineError:
                continue  # not a Qwen3 tokenizer: try the next name
    return LocalPrompt(ChatTemplate.builtin(), None, "built-in Qwen3 template")


def _from_dir(folder: Path) -> LocalPrompt:
    return LocalPrompt(ChatTemplate.from_dir(folder), Qwen3Tokenizer.from_dir(folder), str(folder))


def _find(name: str, download: bool) -> Path | None:
    if not name:
        return None
    path = Path(name).expanduser()
    if path.is_dir():
        return path if (path / "tokenizer.json").is_file() else None
    if not _HUB_ID.match(name):
        return None
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    for local_only in (True, False) if download else (True,):
        try:
            found = Path(
                snapshot_download(name, allow_patterns=TOKENIZER_FILES, local_files_only=local_only)
            )
        except Exception:  # noqa: BLE001 -- offline, gated, missing: the next source is tried
            continue
        if (found / "tokenizer.json").is_file():
            return found
    return None
