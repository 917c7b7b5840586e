"""Slash commands: the one list of them, and pure parsing/validation (no Textual here).

The help screen, the composer's suggestions and the command palette all read `COMMANDS`,
so a command is described in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ThinkingSwitch = Literal["think", "no_think"]


@dataclass(frozen=True)
class SlashCommand:
    name: str  # without the slash
    args: str  # how the arguments look, for help and suggestions ("" when none)
    description: str

    @property
    def usage(self) -> str:
        return f"/{self.name} {self.args}".rstrip()


COMMANDS: tuple[SlashCommand, ...] = (
    SlashCommand("think", "", "thinking on (ending a message: from that message)"),
    SlashCommand("no_think", "", "thinking off (ending a message: from that message)"),
    SlashCommand("budget", "N|off", "thinking budget in tokens; off = unlimited"),
    SlashCommand("new", "", "start a new conversation"),
    SlashCommand("sessions", "", "browse, search, open, rename, delete sessions"),
    SlashCommand("resume", "ID", "open a saved session by id (a prefix is enough)"),
    SlashCommand("rename", "TITLE", "rename this session"),
    SlashCommand("delete", "", "delete this session (asks first)"),
    SlashCommand("export", "md|json [PATH]", "write this session to a Markdown or JSON file"),
    SlashCommand("system", "[TEXT]", "show the system prompt, or set it (off removes it)"),
    SlashCommand("set", "NAME VALUE", "change sampling (temperature, top_p, top_k, min_p, …)"),
    SlashCommand("retry", "", "regenerate the last reply"),
    SlashCommand("copy", "", "copy the last answer to the clipboard"),
    SlashCommand("theme", "NAME", "switch the colour theme (remembered)"),
    SlashCommand("clear", "", "clear the screen (the conversation is kept)"),
    SlashCommand("help", "", "list commands and keys"),
    SlashCommand("quit", "", "quit qwen3tui"),
)

COMMANDS_BY_NAME = {c.name: c for c in COMMANDS}

# Name -> (type, lowest allowed, highest allowed); None means no bound on that side.
SETTABLE: dict[str, tuple[type, float | None, float | None]] = {
    "temperature": (float, 0.0, 5.0),
    "top_p": (float, 0.0, 1.0),
    "top_k": (int, 0, None),
    "min_p": (float, 0.0, 1.0),
    "presence_penalty": (float, -2.0, 2.0),
    "max_tokens": (int, 1, None),
}

UNLIMITED_WORDS = ("off", "unlimited", "none")


class SlashError(ValueError):
    """A command that cannot run as typed; `str()` is the short message shown inline."""


@dataclass(frozen=True)
class ParsedCommand:
    name: str
    arg: str = ""  # the raw argument text, stripped
    # Typed values, filled where the command has them:
    budget: int | None = None  # /budget (None = unlimited)
    setting: str = ""  # /set NAME
    value: float | int | None = None  # /set VALUE
    export_format: str = ""  # /export md|json
    path: str = ""  # /export PATH


def is_command(text: str) -> bool:
    """Whether the composer text is a slash command (rather than a message to the model)."""
    stripped = text.strip()
    return stripped.startswith("/") and not stripped.startswith("//")


def parse(text: str) -> ParsedCommand:
    """Parse and validate one slash command line. Raises SlashError with a one-line message."""
    stripped = text.strip()
    if not stripped.startswith("/"):
        raise SlashError("not a command: commands start with /")
    head, _, rest = stripped[1:].partition(" ")
    name = head.lower()
    arg = rest.strip()
    command = COMMANDS_BY_NAME.get(name)
    if command is None:
        near = suggest("/" + name)
        hint = f" -- did you mean {near[0].usage}?" if near and name else " -- /help lists them"
        raise SlashError(f"unknown command /{head}{hint}")
    if name == "budget":
        return ParsedCommand(name, arg, budget=parse_budget(arg))
    if name == "set":
        setting, value = parse_setting(arg)
        return ParsedCommand(name, arg, setting=setting, value=value)
    if name == "export":
        fmt, path = parse_export(arg)
        return ParsedCommand(name, arg, export_format=fmt, path=path)
    if name in ("resume", "rename", "theme") and not arg:
        raise SlashError(f"/{name} needs {command.args}: {command.usage}")
    takes_no_arg = command.args == ""
    if takes_no_arg and arg:
        raise SlashError(f"/{name} takes no argument")
    return ParsedCommand(name, arg)


def parse_budget(arg: str) -> int | None:
    if not arg:
        raise SlashError("/budget needs a number of tokens or off, e.g. /budget 2048")
    if arg.lower() in UNLIMITED_WORDS:
        return None
    try:
        value = int(arg.replace("_", "").lower().removesuffix("k")) * (
            1024 if arg.lower().endswith("k") else 1
        )
    except ValueError:
        raise SlashError(f"/budget: {arg!r} is not a number of tokens (or off)") from None
    if value < 1:
        raise SlashError("/budget must be at least 1 token (or off for unlimited)")
    return value


def parse_setting(arg: str) -> tuple[str, float | int]:
    parts = arg.split()
    names = ", ".join(SETTABLE)
    if len(parts) != 2:
        raise SlashError(f"/set needs NAME VALUE; NAME is one of {names}")
    name, raw = parts[0].lower(), parts[1]
    if name not in SETTABLE:
        raise SlashError(f"/set: unknown setting {parts[0]!r}; use one of {names}")
    kind, low, high = SETTABLE[name]
    try:
        value: float | int = kind(raw)
    except ValueError:
        word = "a whole number" if kind is int else "a number"
        raise SlashError(f"/set {name}: {raw!r} is not {word}") from None
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise SlashError(f"/set {name} must be {bounds}")
    return name, value


def parse_export(arg: str) -> tuple[str, str]:
    fmt, _, path = arg.partition(" ")
    fmt = fmt.lower()
    if fmt not in ("md", "json"):
        raise SlashError("/export needs a format: /export md|json [PATH]")
    return fmt, path.strip()


def split_soft_switch(text: str) -> tuple[str, ThinkingSwitch | None]:
    """Find Qwen's soft switch at the end of a message.

    Returns the text unchanged (the model expects to see the switch) and which switch ends it,
    if any: "explain x /no_think" -> ("explain x /no_think", "no_think").
    """
    words = text.rstrip().split()
    if len(words) < 2:
        return text, None  # a lone "/think" is a command, not a message
    last = words[-1]
    if last == "/think":
        return text, "think"
    if last == "/no_think":
        return text, "no_think"
    return text, None


def suggest(prefix: str, limit: int = 8) -> list[SlashCommand]:
    """Commands whose name starts with what is typed after the slash (first word only)."""
    if not prefix.startswith("/") or " " in prefix or "\n" in prefix:
        return []
    typed = prefix[1:].lower()
    starts = [c for c in COMMANDS if c.name.startswith(typed)]
    if starts or not typed:
        return starts[:limit]
    # A typo: fall back to commands that contain the typed letters in order.
    return [c for c in COMMANDS if _subsequence(typed, c.name)][:limit]


def _subsequence(needle: str, haystack: str) -> bool:
    it = iter(haystack)
    return all(ch in it for ch in needle)


def help_rows() -> list[tuple[str, str]]:
    """(usage, description) pairs for the help screen."""
    return [(c.usage, c.description) for c in COMMANDS]
