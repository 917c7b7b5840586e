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
one-line warning; it never stops the app. "Broken" includes anything Textual could only discover
when the theme is applied: every colour and every `[variables]` value is test-parsed as CSS before
the theme is registered, and `theme_problem` re-checks a theme against the app's own stylesheet
before it is applied.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from rich.text import Text
from textual.color import Color, ColorParseError
from textual.css.stylesheet import Stylesheet, StylesheetParseError
from textual.css.tokenize import tokenize_values
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
# What Textual's tokenizer accepts after `$` (textual/css/tokenize.py, VARIABLE_REF).
_VARIABLE_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")
# The properties Textual's own CSS feeds theme variables into: colours and text styles.
_PROBE_PROPERTIES = ("color", "background", "text-style")


class ThemeFileError(ValueError):
    """A theme file that cannot be used; the message is one line naming the file and the fix."""


class _ThemeHost(Protocol):
    def register_theme(self, theme: Theme) -> None: ...


class _StyledApp(Protocol):
    """What `theme_problem` needs of a Textual App."""

    available_themes: dict[str, Theme]
    stylesheet: Stylesheet

    def get_theme_variable_defaults(self) -> dict[str, str]: ...


@dataclass
class FileTheme(Theme):
    """A Theme that remembers the file it came from, so later warnings can name it."""

    source: str = ""


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
    theme = FileTheme(
        name=name, dark=dark, variables=dict(variables), **colors, **numbers, source=source
    )
    _check_variables(theme, source)
    return theme


def _check_variables(theme: Theme, source: str) -> None:
    """Test-parse the CSS variables the theme would give Textual, before anyone applies it.

    Textual only parses them when the theme is applied, and a value it rejects there takes the
    whole app down ("CSS parsing failed"). Each of the theme's own `[variables]` is parsed in a
    one-rule stylesheet, in the kind of property its Textual default is valid in (a colour
    variable must be a colour, a text-style variable a text style).
    """
    try:
        # generate() folds the theme's own variables in; the defaults are what it makes without.
        defaults = replace(theme, variables={}).to_color_system().generate()
        theme.to_color_system().generate()
    except Exception as err:  # noqa: BLE001 -- any failure here is a theme Textual cannot use
        raise ThemeFileError(f"{source}: Textual cannot build its colours ({err})") from None
    combined = {**defaults, **theme.variables}
    for name, value in theme.variables.items():
        if not _VARIABLE_NAME.match(name):
            raise ThemeFileError(
                f"{source}: [variables] name {name!r} may only hold letters, digits, - and _"
            )
        try:
            tokenize_values({name: value})
        except Exception:  # noqa: BLE001 -- TokenError and friends: not CSS
            raise ThemeFileError(
                f"{source}: [variables] {name} = {value!r} is not a CSS value"
            ) from None
        if name not in defaults:
            continue  # nothing in Textual uses it; it only had to tokenize
        kinds = [p for p in _PROBE_PROPERTIES if _css_error(p, name, defaults) is None]
        if len(kinds) == len(_PROBE_PROPERTIES):
            # A keyword every property takes ("initial"): any one kind will do.
            if all(_css_error(p, name, combined) is not None for p in kinds):
                raise ThemeFileError(
                    f"{source}: [variables] {name} = {value!r} is neither a colour nor a text style"
                )
            continue
        for prop in kinds:
            problem = _css_error(prop, name, combined)
            if problem is not None:
                raise ThemeFileError(f"{source}: [variables] {name} = {value!r}: {problem}")


def _css_error(prop: str, name: str, variables: dict[str, str]) -> str | None:
    """Why `prop: $name` does not parse with these variables (one line), or None if it does."""
    sheet = Stylesheet(variables=variables)
    sheet.add_source(f"Screen {{ {prop}: ${name}; }}")
    try:
        sheet.parse()
    except StylesheetParseError as err:
        return _first_css_error(err)
    except Exception as err:  # noqa: BLE001 -- TokenError, StylesheetError: all one line
        return str(err).splitlines()[0] if str(err) else type(err).__name__
    return None


def _first_css_error(err: StylesheetParseError) -> str:
    for rule in err.errors.rules:
        for _token, message in rule.errors:
            summary = getattr(message, "summary", message)
            return Text.from_markup(str(summary)).plain.splitlines()[0]
    return "CSS parsing failed"


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
    except UnicodeDecodeError:
        raise ThemeFileError(f"{path}: not UTF-8 text (save the file as UTF-8)") from None
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
        try:
            paths_here = sorted(folder.glob("*.toml")) if folder.is_dir() else []
        except OSError as err:
            result.warnings.append(f"themes skipped: {folder}: cannot read ({err.strerror or err})")
            continue
        for path in paths_here:
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


def theme_problem(app: _StyledApp, name: str) -> str | None:
    """Why theme `name` cannot be applied to `app` right now (one line), or None if it can.

    Call it before `app.theme = name`. It re-parses a copy of the app's stylesheet, as loaded
    so far, with the CSS variables the theme would produce, which is exactly what Textual does
    when the theme is applied; the app's own stylesheet is left as it is.
    """
    theme = app.available_themes.get(name)
    if theme is None:
        names = ", ".join(sorted(app.available_themes))
        return f"no theme {name!r}; available: {names}"
    where = f" ({theme.source})" if isinstance(theme, FileTheme) and theme.source else ""
    try:
        variables = {
            **app.get_theme_variable_defaults(),
            **theme.to_color_system().generate(),
            **theme.variables,
        }
        sheet = app.stylesheet.copy()
        sheet.set_variables(variables)
        sheet.parse()
    except StylesheetParseError as err:
        return f"theme {name!r}{where} cannot be applied: {_first_css_error(err)}"
    except Exception as err:  # noqa: BLE001 -- whatever Textual raises, one line
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        return f"theme {name!r}{where} cannot be applied: {first}"
    return None


def start_theme(app: _StyledApp, wanted: str, default: str) -> tuple[str, str | None]:
    """The theme to start with: the remembered one if it can be applied, else `default`.

    Returns the name and, when the remembered one was passed over, a one-line warning.
    """
    problem = theme_problem(app, wanted)
    if problem is None:
        return wanted, None
    fallback = default if theme_problem(app, default) is None else "textual-dark"
    return fallback, f"{problem}; using {fallback}"
