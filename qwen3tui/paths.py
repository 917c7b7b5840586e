"""Where qwen3tui keeps its data and config.

`QWEN3TUI_HOME` moves everything to one folder (tests use it); otherwise the platform's
user data and config dirs are used.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "qwen3tui"


def _home() -> Path | None:
    value = os.environ.get("QWEN3TUI_HOME")
    return Path(value).expanduser() if value else None


def data_dir() -> Path:
    """Folder for the session database and other state."""
    home = _home()
    return home if home else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def config_dir() -> Path:
    """Folder for user settings and user themes."""
    home = _home()
    return home if home else Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def sessions_db_path() -> Path:
    return data_dir() / "sessions.db"


def settings_path() -> Path:
    return config_dir() / "settings.toml"


def user_themes_dir() -> Path:
    return config_dir() / "themes"
