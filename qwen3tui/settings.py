"""Every user setting, declared once: its key, type, range, default and help.

The one schema serves the TUI (`/set`, the switch and the slider), `ask`'s flags, settings.toml,
the settings saved with each session, and imports. Generation values take their ranges from the
engine (`engine.options.LIMITS`), which checks them again itself.

Loading never fails: a missing file gives the defaults, a damaged file or a bad value gives the
defaults for what could not be read plus a one-line warning in `warnings`. Saving writes a
temporary file beside the old one and swaps it in, so a failed save leaves the old file whole.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from qwen3tui import paths
from qwen3tui.engine.errors import InvalidOptionError
from qwen3tui.engine.options import LIMITS, ChatOptions, SamplingOverrides, check_value, parse_value

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

UNLIMITED = "unlimited"  # TOML has no null: how an unlimited budget is written
UNLIMITED_WORDS = ("off", "unlimited", "none")


class SettingError(ValueError):
    """A value a setting cannot take; `str()` is one line naming the value and the range."""


@dataclass(frozen=True)
class Setting:
    key: str  # in settings.toml, in a session's saved settings, and for /set
    default: Any
    help: str
    check: Callable[[Any], Any]  # a typed value (TOML, JSON) -> the value; SettingError if bad
    parse: Callable[[str], Any]  # typed text (/set, flags) -> the value; SettingError if bad
    sampling: bool = False  # a sampling override (None: the model's default for the mode)


def _limited(name: str) -> tuple[Callable[[Any], Any], Callable[[str], Any]]:
    def check(value: Any) -> Any:
        try:
            return check_value(name, value)
        except InvalidOptionError as err:
            raise SettingError(str(err)) from None

    def parse(text: str) -> Any:
        try:
            return parse_value(name, text)
        except InvalidOptionError as err:
            raise SettingError(str(err)) from None

    return check, parse


def _check_budget(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and value.lower() in UNLIMITED_WORDS):
        return None
    return _limited("thinking_budget")[0](value)


def _parse_budget(text: str) -> int | None:
    word = text.strip().lower()
    if word in UNLIMITED_WORDS:
        return None
    scale = 1024 if word.endswith("k") else 1
    try:
        number = int(word.removesuffix("k").replace("_", "")) * scale
    except ValueError:
        allowed = LIMITS["thinking_budget"].allowed
        raise SettingError(
            f"thinking_budget = {text.strip()!r} is not allowed: use {allowed}, or off"
        ) from None
    return _check_budget(number)


def _check_bool(name: str) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise SettingError(f"{name} = {value!r} is not allowed: use true or false")
        return value

    return check


def _parse_bool(name: str) -> Callable[[str], bool]:
    def parse(text: str) -> bool:
        word = text.strip().lower()
        if word in ("on", "true", "yes", "1"):
            return True
        if word in ("off", "false", "no", "0"):
            return False
        raise SettingError(f"{name} = {text.strip()!r} is not allowed: use on or off")

    return parse


def _check_name(name: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value.strip() or len(value) > 4096:
            raise SettingError(f"{name} = {value!r} is not allowed: use a name")
        return value.strip()

    return check


def _check_dirs(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise SettingError(f"model_dirs = {value!r} is not allowed: use a list of folders")
    return tuple(_check_name("model_dirs")(v) for v in value)


def _parse_dirs(text: str) -> tuple[str, ...]:
    return _check_dirs([text])


def _check_choice(name: str, choices: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        word = value.strip().lower() if isinstance(value, str) else value
        if word not in choices:
            raise SettingError(f"{name} = {value!r} is not allowed: use {' | '.join(choices)}")
        return word

    return check


def _sampling(name: str, help_text: str) -> Setting:
    check, parse = _limited(name)
    return Setting(name, None, help_text, check, parse, sampling=True)


DEFAULT_THEME = "qwen-dark"
ThinkingDisplay = Literal["expanded", "collapsed", "hidden"]
THINKING_DISPLAYS: tuple[ThinkingDisplay, ...] = ("expanded", "collapsed", "hidden")
DEFAULT_THINKING_DISPLAY: ThinkingDisplay = "collapsed"
# Enough room for most reasoning while bounding the wait on a slow machine; "unlimited" is a
# slider step away.
DEFAULT_THINKING_BUDGET = 4096
DEFAULT_MAX_TOKENS = ChatOptions().max_new_tokens

SETTINGS: tuple[Setting, ...] = (
    Setting("theme", DEFAULT_THEME, "colour theme", _check_name("theme"), _check_name("theme")),
    Setting(
        "thinking_display",
        DEFAULT_THINKING_DISPLAY,
        "the reasoning: expanded, collapsed once the answer starts, or hidden (one line)",
        _check_choice("thinking_display", THINKING_DISPLAYS),
        _check_choice("thinking_display", THINKING_DISPLAYS),
    ),
    Setting("model", None, "model to load", _check_name("model"), _check_name("model")),
    Setting(
        "server",
        None,
        "an OpenAI-compatible server to chat through (e.g. http://gpu-box:8000/v1)",
        _check_name("server"),
        _check_name("server"),
    ),
    Setting(
        "model_dirs",
        (),
        "local model folders `qwen3tui models` lists beside the Hugging Face cache",
        _check_dirs,
        _parse_dirs,
    ),
    Setting(
        "thinking",
        True,
        "thinking mode on or off",
        _check_bool("thinking"),
        _parse_bool("thinking"),
    ),
    Setting(
        "thinking_budget",
        DEFAULT_THINKING_BUDGET,
        "most tokens of thinking per reply (off: unlimited)",
        _check_budget,
        _parse_budget,
    ),
    Setting("max_tokens", DEFAULT_MAX_TOKENS, "most tokens per reply", *_limited("max_tokens")),
    _sampling("temperature", "randomness; 0 is greedy"),
    _sampling("top_p", "nucleus sampling mass"),
    _sampling("top_k", "sample from the k likeliest tokens; 0 turns it off"),
    _sampling("min_p", "drop tokens below this share of the likeliest"),
    _sampling("presence_penalty", "discourage repeating tokens already used"),
    _sampling("seed", "random seed, for repeatable replies"),
)
BY_KEY = {s.key: s for s in SETTINGS}
SAMPLING_KEYS = tuple(s.key for s in SETTINGS if s.sampling)
SETTABLE = ("max_tokens", *SAMPLING_KEYS)  # what `/set NAME VALUE` takes


def parse_setting(key: str, text: str) -> Any:
    """A setting from typed text; SettingError (one line) for unknown names and bad values."""
    setting = BY_KEY.get(key)
    if setting is None:
        raise SettingError(f"unknown setting {key!r}; use one of {', '.join(SETTABLE)}")
    return setting.parse(text)


@dataclass(frozen=True)
class TurnSettings:
    """What the next turn uses; saved with each session and as the user's defaults."""

    thinking: bool = True
    thinking_budget: int | None = DEFAULT_THINKING_BUDGET  # None: unlimited
    max_tokens: int = DEFAULT_MAX_TOKENS
    sampling: SamplingOverrides = field(default_factory=SamplingOverrides)

    def options(self) -> ChatOptions:
        return ChatOptions(
            thinking=self.thinking,
            thinking_budget=self.thinking_budget if self.thinking else None,
            max_new_tokens=self.max_tokens,
            sampling=self.sampling,
        )

    def sampling_dict(self) -> dict[str, int | float]:
        chosen = {f.name: getattr(self.sampling, f.name) for f in fields(self.sampling)}
        return {k: v for k, v in chosen.items() if v is not None}

    def with_value(self, key: str, value: Any) -> TurnSettings:
        """A copy with one setting changed (the value already checked)."""
        if BY_KEY[key].sampling:
            return replace(self, sampling=replace(self.sampling, **{key: value}))
        return replace(self, **{key: value})

    def to_dict(self) -> dict[str, Any]:
        """The session's saved settings."""
        return {
            "thinking": self.thinking,
            "thinking_budget": self.thinking_budget,
            "max_tokens": self.max_tokens,
            "sampling": self.sampling_dict(),
        }

    @classmethod
    def from_dict(
        cls, data: Any, base: TurnSettings | None = None, warnings: list[str] | None = None
    ) -> TurnSettings:
        """Settings saved with a session (or imported): what is valid, `base` for the rest.

        Bad values are skipped with a warning each, never raised: an old or hand-edited session
        must still open.
        """
        settings = base or cls()
        if not isinstance(data, dict):
            return settings
        flat = {k: v for k, v in data.items() if k != "sampling"}
        if "max_new_tokens" in flat and "max_tokens" not in flat:  # as `ask` saved it before
            flat["max_tokens"] = flat.pop("max_new_tokens")
        sampling = data.get("sampling")
        if isinstance(sampling, dict):
            flat.update({k: v for k, v in sampling.items() if k in SAMPLING_KEYS})
        for key in ("thinking", "thinking_budget", "max_tokens", *SAMPLING_KEYS):
            if key not in flat:
                continue
            try:
                value = BY_KEY[key].check(flat[key])
            except SettingError as err:
                if warnings is not None:
                    warnings.append(f"{err}; using {describe(getattr_setting(settings, key))}")
                continue
            settings = settings.with_value(key, value)
        return settings


def getattr_setting(settings: TurnSettings, key: str) -> Any:
    if BY_KEY[key].sampling:
        return getattr(settings.sampling, key)
    return getattr(settings, key)


def describe(value: Any) -> str:
    if value is None:
        return "the default"
    return str(value)


@dataclass
class UserSettings:
    theme: str = DEFAULT_THEME
    thinking_display: ThinkingDisplay = DEFAULT_THINKING_DISPLAY
    model: str | None = None  # None: the app's default model
    server: str | None = None  # None: run the model here, on our own engine
    model_dirs: tuple[str, ...] = ()  # added with `qwen3tui models add DIR`
    turn: TurnSettings = field(default_factory=TurnSettings)
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
        sampling = data.get("sampling", {})
        if not isinstance(sampling, dict):
            self.warnings.append(f"settings {path}: sampling must be a table; ignored")
            sampling = {}
        values = {k: v for k, v in data.items() if k != "sampling"}
        if "max_tokens" in sampling and "max_tokens" not in values:  # where older files had it
            values["max_tokens"] = sampling.pop("max_tokens")
        for key in sorted(set(values) - set(BY_KEY) - set(SAMPLING_KEYS)):
            self.warnings.append(f"settings {path}: unknown setting {key!r} ignored")
        for key in sorted(set(sampling) - set(SAMPLING_KEYS)):
            self.warnings.append(f"settings {path}: unknown sampling setting {key!r} ignored")
        values.update({k: v for k, v in sampling.items() if k in SAMPLING_KEYS})
        for setting in SETTINGS:
            if setting.key not in values:
                continue
            raw = values[setting.key]
            try:
                value = setting.check(raw)
            except SettingError as err:
                self.warnings.append(f"settings {path}: {err}; using the default")
                continue
            if setting.key in ("theme", "thinking_display", "model", "server", "model_dirs"):
                setattr(self, setting.key, value)
            else:
                self.turn = self.turn.with_value(setting.key, value)

    def to_toml(self) -> str:
        t = self.turn
        budget = t.thinking_budget
        lines = [
            "# qwen3tui settings; edited by the app, safe to edit by hand.",
            f"theme = {_toml_string(self.theme)}",
            f"thinking_display = {_toml_string(self.thinking_display)}",
            f"thinking = {'true' if t.thinking else 'false'}",
            f"thinking_budget = {_toml_string(UNLIMITED) if budget is None else budget}",
            f"max_tokens = {t.max_tokens}",
        ]
        if self.model is not None:
            lines.append(f"model = {_toml_string(self.model)}")
        if self.server is not None:
            lines.append(f"server = {_toml_string(self.server)}")
        if self.model_dirs:
            lines.append(f"model_dirs = [{', '.join(_toml_string(d) for d in self.model_dirs)}]")
        lines += ["", "[sampling]"]
        for key, value in t.sampling_dict().items():
            lines.append(f"{key} = {_toml_number(value)}")
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


class SettingsSaveError(OSError):
    """Saving failed; the message is one line saying where and why. The old file is untouched."""


def _reason(err: Exception) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__


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


def _toml_number(value: float | int) -> str:
    if isinstance(value, bool):
        raise TypeError(f"not a number: {value!r}")
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        raise ValueError(f"sampling values must be finite, not {value!r}")
    return repr(float(value))  # Python's float repr ("0.7", "1e-05") is valid TOML
