"""Where the engine keeps what it builds once and reuses across launches (compiled kernels)."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir(kind: str) -> Path:
    """`$QWEN3TUI_HOME/cache/<kind>` when that is set, else `<user cache>/qwen3tui/<kind>`."""
    home = os.environ.get("QWEN3TUI_HOME")
    if home:
        return Path(home) / "cache" / kind
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "qwen3tui" / kind
