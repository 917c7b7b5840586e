"""Themes as small TOML files, registered as Textual themes.

A theme file looks like this (only `name` and `primary` are required)::

    name = "qwen-dark"
    dark = true
    primary = "#7c6cf0"
    secondary = "#4f8fd6"
    accent = "#f0a35e"
    background = "#14131c"
    surface = "#1c1b27"
    panel = "#262434"
    foreground = "#e4e2f0"
    warning = "#e8b04b"
    error = "#e0566b"
    success = "#5fc48a"
    # boost, luminosity_spread and text_alpha are optional too
    [variables]
    footer-key-foreground = "#f0a35e"

The shipped themes live in the top-level `themes/` folder (packaged as `qwen3tui/themes`);
users drop their own files into `paths.user_themes_dir()`. A broken file is skipped with a
one-line warning; it never stops the app.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from textual.color import Color, ColorParseError
from textual.theme import Theme

from qwen3tui import paths

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

COLOR_KEYS = (
    "primary",
    "secondary",
    "accent",
    "background",
    "surface",
    "panel",
    "foreground",
    "warning",
    "error",
    "success",
    "boost",
)
NUMBER_KEYS = ("luminosity_spread", "text_alpha")
KNOWN_KEYS = frozenset(("name", "dark", "variables", *COLOR_KEYS, *NUMBER_KEYS))
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class ThemeFileError(ValueError):
    """A theme file that cannot be used; the message is one line naming the file and the fix."""


class _ThemeHost(Protocol):
    def register_theme(self, theme: Theme) -> None: ...


def shipped_themes_dirs() -> list[Path]:
    """The folder of themes that come with qwen3tui (empty list if it is missing).

    Installed, they are package data in `qwen3tui/themes`; in a source checkout that is a link to
    the top-level `themes/`, which is also looked at directly in case the link is absent.
    """
    package_dir = Path(__file__).resolve().parent.parent
    for candidate in (package_dir / "themes", package_dir.parent / "themes"):
        if candidate.is_dir():
            return [candidate]
    return []


def theme_from_mapping(data: dict[str, Any], source: str = "theme") -> Theme:
    """Build a Textual Theme from parsed TOML, checking every field."""
    unknown = sorted(set(data) - KNOWN_KEYS)
    if unknown:
        raise ThemeFileError(
            f"{source}: unknown key {unknown[0]!r} (known keys: {', '.join(sorted(KNOWN_KEYS))})"
        )
    name = data.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ThemeFileError(
            f"{source}: 'name' must be a lowercase name like \"my-theme\" (got {name!r})"
        )
    if "primary" not in data:
        raise ThemeFileError(f"{source}: 'primary' colour is required")
    colors: dict[str, str] = {}
    for key in COLOR_KEYS:
        if key in data:
            colors[key] = _color(data[key], key, source)
    dark = data.get("dark", True)
    if not isinstance(dark, bool):
        raise ThemeFileError(f"{source}: 'dark' must be true or false (got {dark!r})")
    numbers: dict[str, float] = {}
    for key in NUMBER_KEYS:
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ThemeFileError(f"{source}: {key!r} must be a number from 0 to 1")
            numbers[key] = float(value)
    variables = data.get("variables", {})
    if not isinstance(variables, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in variables.items()
    ):
        raise ThemeFileError(f"{source}: [variables] must map names to strings")
    return Theme(name=name, dark=dark, variables=dict(variables), **colors, **numbers)


def _color(value: object, key: str, source: str) -> str:
    if not isinstance(value, str):
        raise ThemeFileError(f'{source}: {key!r} must be a colour string like "#1e1e2e"')
    try:
        Color.parse(value)
    except ColorParseError:
        raise ThemeFileError(
            f'{source}: {key!r} is not a colour: {value!r} (use e.g. "#1e1e2e")'
        ) from None
    return value


def load_theme_file(path: Path) -> Theme:
    """Read one theme file; raises ThemeFileError with a one-line reason."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as err:
        raise ThemeFileError(f"{path}: cannot read ({err.strerror or err})") from None
    except tomllib.TOMLDecodeError as err:
        raise ThemeFileError(f"{path}: not valid TOML ({err})") from None
    return theme_from_mapping(data, source=str(path))


@dataclass
class ThemeLoad:
    """What loading a set of theme folders produced."""

    themes: list[Theme] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def load_themes(folders: Iterable[Path]) -> ThemeLoad:
    """Every usable theme in `folders`, in order; a later file with the same name wins."""
    result = ThemeLoad()
    by_name: dict[str, Theme] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                theme = load_theme_file(path)
            except ThemeFileError as err:
                result.warnings.append(f"theme skipped: {err}")
                continue
            by_name[theme.name] = theme
    result.themes = list(by_name.values())
    return result


class RegisteredThemes(list[str]):
    """The names of the registered themes, plus `.warnings` about files that were skipped."""

    def __init__(self, names: Iterable[str], warnings: Iterable[str]) -> None:
        super().__init__(names)
        self.warnings: list[str] = list(warnings)


def register_themes(app: _ThemeHost, *, user_dir: Path | None = None) -> RegisteredThemes:
    """Register the shipped themes and the user's own with `app`; returns their names.

    User themes load after the shipped ones, so a user file named like a shipped theme replaces
    it. Files that could not be used are listed in the result's `.warnings`, one line each.
    """
    user = user_dir if user_dir is not None else paths.user_themes_dir()
    loaded = load_themes([*shipped_themes_dirs(), user])
    for theme in loaded.themes:
        app.register_theme(theme)
    return RegisteredThemes((theme.name for theme in loaded.themes), loaded.warnings)
