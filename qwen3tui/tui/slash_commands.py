"""Slash commands: the one table of them, and pure parsing (no Textual here).

One declaration per command — name, arguments, help text, how its argument is read, and the
handler that runs it — from which parsing, the composer's suggestions and Tab completion, the
help screen, the command palette and README's command table (checked by a test) all come.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from qwen3tui.settings import BY_KEY, SETTABLE, THINKING_DISPLAYS, SettingError, parse_setting

from . import command_handlers as run

ThinkingSwitch = Literal["think", "no_think"]


class SlashError(ValueError):
    """A command that cannot run as typed; `str()` is the short message shown inline."""


def _none(name: str) -> Callable[[str], None]:
    def parse(arg: str) -> None:
        if arg:
            raise SlashError(f"/{name} takes no argument")

    return parse


def _required(name: str, what: str) -> Callable[[str], str]:
    def parse(arg: str) -> str:
        if not arg:
            raise SlashError(f"/{name} needs {what}: /{name} {what}")
        return arg

    return parse


def _free(arg: str) -> str:
    return arg


def _budget(arg: str) -> int | None:
    if not arg:
        raise SlashError("/budget needs a number of tokens or off, e.g. /budget 2048")
    try:
        return BY_KEY["thinking_budget"].parse(arg)
    except SettingError as err:
        raise SlashError(f"/budget: {err}") from None


def _set(arg: str) -> tuple[str, Any]:
    parts = arg.split()
    names = ", ".join(SETTABLE)
    if len(parts) != 2:
        raise SlashError(f"/set needs NAME VALUE; NAME is one of {names}")
    name = parts[0].lower()
    if name not in SETTABLE:
        raise SlashError(f"/set: unknown setting {parts[0]!r}; use one of {names}")
    try:
        return name, parse_setting(name, parts[1])
    except SettingError as err:
        raise SlashError(f"/set {err}") from None


def _thinking_display(arg: str) -> str:
    try:
        return BY_KEY["thinking_display"].parse(arg)
    except SettingError:
        raise SlashError(
            f"/thinking needs how to show reasoning: /thinking {'|'.join(THINKING_DISPLAYS)}"
        ) from None


def _edit(arg: str) -> int | None:
    if not arg:
        return None
    if not arg.isdigit() or int(arg) < 1:
        raise SlashError("/edit takes the number of one of your messages (1 = the first), or none")
    return int(arg)


def _branch(arg: str) -> int:
    steps = {"prev": -1, "previous": -1, "next": 1}
    if arg.lower() not in steps:
        raise SlashError("/branch needs a direction: /branch prev|next")
    return steps[arg.lower()]


def _export(arg: str) -> tuple[str, str]:
    fmt, _, path = arg.partition(" ")
    if fmt.lower() not in ("md", "json"):
        raise SlashError("/export needs a format: /export md|json [PATH]")
    return fmt.lower(), path.strip()


@dataclass(frozen=True)
class SlashCommand:
    name: str  # without the slash
    args: str  # how the arguments look, for help and suggestions ("" when none)
    description: str
    handler: Callable[[Any, Any], None]  # (the chat, the parsed value)
    parse: Callable[[str], Any] | None = None  # the argument text -> the value; None: no argument
    palette: tuple[str, ...] = ()  # extra ready-made forms for the command palette

    @property
    def usage(self) -> str:
        return f"/{self.name} {self.args}".rstrip()

    def read(self, arg: str) -> Any:
        return (self.parse or _none(self.name))(arg)


COMMANDS: tuple[SlashCommand, ...] = (
    SlashCommand("think", "", "thinking on (ending a message: from that message)", run.think),
    SlashCommand(
        "no_think", "", "thinking off (ending a message: from that message)", run.no_think
    ),
    SlashCommand(
        "budget",
        "N|off",
        "thinking budget in tokens; off = unlimited",
        run.budget,
        _budget,
        palette=("/budget off",),
    ),
    SlashCommand(
        "thinking",
        "expanded|collapsed|hidden",
        "how reasoning shows: open, folded once answered, or one line (remembered)",
        run.thinking_display,
        _thinking_display,
        palette=tuple(f"/thinking {d}" for d in THINKING_DISPLAYS),
    ),
    SlashCommand("new", "", "start a new conversation", run.new),
    SlashCommand("sessions", "", "browse, search, open, rename, delete sessions", run.sessions),
    SlashCommand(
        "resume",
        "ID",
        "open a saved session by id (a prefix is enough)",
        run.resume,
        _required("resume", "ID"),
    ),
    SlashCommand(
        "rename", "TITLE", "rename this session", run.rename, _required("rename", "TITLE")
    ),
    SlashCommand("delete", "", "delete this session (asks first)", run.delete),
    SlashCommand(
        "export",
        "md|json [PATH]",
        "write this session to a Markdown or JSON file",
        run.export,
        _export,
        palette=("/export md", "/export json"),
    ),
    SlashCommand(
        "system", "[TEXT]", "show the system prompt, or set it (off removes it)", run.system, _free
    ),
    SlashCommand(
        "set",
        "NAME VALUE",
        "change max_tokens or sampling (temperature, top_p, top_k, min_p, …)",
        run.set_value,
        _set,
    ),
    SlashCommand(
        "file",
        "PATH",
        "attach a text file to your next message (or type @PATH in it)",
        run.attach_file,
        _required("file", "PATH"),
    ),
    SlashCommand(
        "retry", "", "regenerate the last reply (the old one stays, as another version)", run.retry
    ),
    SlashCommand(
        "edit",
        "[N]",
        "edit your last message (or your Nth) and send it as a new version",
        run.edit,
        _edit,
    ),
    SlashCommand(
        "branch",
        "prev|next",
        "show the previous or next version of the last message that has several",
        run.branch,
        _branch,
        palette=("/branch prev", "/branch next"),
    ),
    SlashCommand("copy", "", "copy the last answer to the clipboard", run.copy),
    SlashCommand(
        "model",
        "[NAME]",
        "list the models, or switch to NAME mid-conversation",
        run.model,
        _free,
    ),
    SlashCommand(
        "theme",
        "[NAME]",
        "list the colour themes, or switch to NAME (remembered)",
        run.theme,
        _free,
    ),
    SlashCommand("clear", "", "clear the screen (the conversation is kept)", run.clear),
    SlashCommand("help", "", "list commands and keys", run.help),
    SlashCommand("quit", "", "quit qwen3tui", run.quit),
)

COMMANDS_BY_NAME = {c.name: c for c in COMMANDS}


@dataclass(frozen=True)
class ParsedCommand:
    command: SlashCommand
    arg: str = ""  # the raw argument text, stripped
    value: Any = None  # what the command's `parse` made of it

    @property
    def name(self) -> str:
        return self.command.name

    def run(self, chat: Any) -> None:
        self.command.handler(chat, self.value)


def command(name: str, value: Any = None) -> ParsedCommand:
    """A command as if typed, for keys and buttons that run one."""
    return ParsedCommand(COMMANDS_BY_NAME[name], value=value)


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
    found = COMMANDS_BY_NAME.get(name)
    if found is None:
        near = suggest("/" + name)
        hint = f" -- did you mean {near[0].usage}?" if near and name else " -- /help lists them"
        raise SlashError(f"unknown command /{head}{hint}")
    return ParsedCommand(found, arg, found.read(arg))


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


def strip_soft_switch(text: str) -> str:
    """The message without its trailing soft switch (for models that do not know it)."""
    words = text.rstrip().rsplit(None, 1)
    return words[0] if len(words) == 2 and words[1] in ("/think", "/no_think") else text


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
    """(usage, description) pairs for the help screen and README's table."""
    return [(c.usage, c.description) for c in COMMANDS]


def palette_entries() -> list[tuple[str, str, str]]:
    """(title, slash text to run, help) for every command the palette offers: those that need
    no typed argument, and each command's ready-made forms."""
    entries: list[tuple[str, str, str]] = []
    for c in COMMANDS:
        if c.parse is None or c.args.startswith("["):
            entries.append((f"/{c.name}", f"/{c.name}", c.description))
        entries += [(text, text, c.description) for text in c.palette]
    return entries
