"""The user's remembered choices (theme, thinking, budget, sampling, model) in a small TOML file.

Loading never fails: a missing file gives the defaults, a damaged file or a bad value gives the
defaults for what could not be read plus a one-line warning in `settings.warnings`. Saving writes
a temporary file beside the old one and swaps it in, so a failed save leaves the old file whole.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from qwen3tui import paths

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

DEFAULT_THEME = "qwen-dark"
# Enough room for most reasoning while bounding the wait on a slow machine; "unlimited" is a
# slider step away.
DEFAULT_THINKING_BUDGET = 4096
UNLIMITED = "unlimited"  # TOML has no null: how an unlimited budget is written

SAMPLING_KEYS: dict[str, tuple[type, ...]] = {
    "temperature": (int, float),
    "top_p": (int, float),
    "top_k": (int,),
    "min_p": (int, float),
    "presence_penalty": (int, float),
    "seed": (int,),
    "max_tokens": (int,),
}


class SettingsSaveError(OSError):
    """Saving failed; the message is one line saying where and why. The old file is untouched."""


@dataclass
class UserSettings:
    theme: str = DEFAULT_THEME
    thinking: bool = True
    thinking_budget: int | None = DEFAULT_THINKING_BUDGET  # None: unlimited
    sampling: dict[str, float | int] = field(default_factory=dict)  # overrides of model defaults
    model: str | None = None  # None: the app's default model
    warnings: list[str] = field(default_factory=list, repr=False, compare=False)
    """Problems met while loading, one line each, for the app to show. Never saved."""

    @classmethod
    def load(cls, path: Path | None = None) -> UserSettings:
        path = Path(path) if path is not None else paths.settings_path()
        settings = cls()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return settings
        except (OSError, UnicodeDecodeError) as err:
            settings.warnings.append(
                f"settings not read from {path} ({_reason(err)}); using defaults"
            )
            return settings
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            settings.warnings.append(f"settings file {path} is damaged ({err}); using defaults")
            return settings
        settings._apply(data, path)
        return settings

    def _apply(self, data: dict[str, Any], path: Path) -> None:
        def bad(key: str, why: str) -> None:
            self.warnings.append(f"settings {path}: {key} {why}; using the default")

        for key in sorted(set(data) - {f.name for f in fields(self)} - {"warnings"}):
            self.warnings.append(f"settings {path}: unknown setting {key!r} ignored")
        if "theme" in data:
            if isinstance(data["theme"], str) and data["theme"].strip():
                self.theme = data["theme"].strip()
            else:
                bad("theme", "must be a theme name")
        if "thinking" in data:
            if isinstance(data["thinking"], bool):
                self.thinking = data["thinking"]
            else:
                bad("thinking", "must be true or false")
        if "thinking_budget" in data:
            budget = data["thinking_budget"]
            if budget == UNLIMITED:
                self.thinking_budget = None
            elif isinstance(budget, int) and not isinstance(budget, bool) and budget > 0:
                self.thinking_budget = budget
            else:
                bad("thinking_budget", f'must be a positive number of tokens or "{UNLIMITED}"')
        if "model" in data:
            if isinstance(data["model"], str) and data["model"].strip():
                self.model = data["model"].strip()
            else:
                bad("model", "must be a model name or path")
        if "sampling" in data:
            if isinstance(data["sampling"], dict):
                self.sampling = self._read_sampling(data["sampling"], path)
            else:
                bad("sampling", "must be a table")

    def _read_sampling(self, table: dict[str, Any], path: Path) -> dict[str, float | int]:
        chosen: dict[str, float | int] = {}
        for key, value in table.items():
            kinds = SAMPLING_KEYS.get(key)
            if kinds is None:
                self.warnings.append(f"settings {path}: unknown sampling setting {key!r} ignored")
            elif isinstance(value, bool) or not isinstance(value, kinds) or not _finite(value):
                self.warnings.append(f"settings {path}: sampling {key} = {value!r} ignored")
            else:
                chosen[key] = value
        return chosen

    def to_toml(self) -> str:
        budget = self.thinking_budget
        lines = [
            "# qwen3tui settings; edited by the app, safe to edit by hand.",
            f"theme = {_toml_string(self.theme)}",
            f"thinking = {'true' if self.thinking else 'false'}",
            f"thinking_budget = {_toml_string(UNLIMITED) if budget is None else budget}",
        ]
        if self.model is not None:
            lines.append(f"model = {_toml_string(self.model)}")
        lines += ["", "[sampling]"]
        for key, value in self.sampling.items():
            if value is None:  # None means "the model's default": nothing to remember
                continue
            lines.append(f"{_toml_key(key)} = {_toml_number(value)}")
        return "\n".join(lines) + "\n"

    def save(self, path: Path | None = None) -> Path:
        """Write the settings atomically; returns the path. Raises SettingsSaveError."""
        path = Path(path) if path is not None else paths.settings_path()
        try:
            text = self.to_toml()
        except (TypeError, ValueError) as err:
            raise SettingsSaveError(f"could not save settings to {path}: {err}") from None
        tmp_name: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=".settings-", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, path)
            tmp_name = None
        except OSError as err:
            raise SettingsSaveError(f"could not save settings to {path}: {_reason(err)}") from None
        finally:
            if tmp_name is not None:
                try:
                    os.unlink(tmp_name)
                except OSError:
                    pass
        return path


def _reason(err: Exception) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__


def _finite(value: float | int) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def _toml_string(value: str) -> str:
    """A TOML basic string: escape quotes, backslashes and every control character."""
    out = ['"']
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _toml_key(key: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key)
    return key if bare else _toml_string(key)


def _toml_number(value: float | int) -> str:
    if isinstance(value, bool):
        raise TypeError(f"not a number: {value!r}")
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        raise ValueError(f"sampling values must be finite, not {value!r}")
    return repr(float(value))  # Python's float repr ("0.7", "1e-05") is valid TOML
