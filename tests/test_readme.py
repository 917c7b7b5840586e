"""README's tables are produced from, or checked against, the code they describe."""

from __future__ import annotations

import re
from pathlib import Path

from qwen3tui.tui.slash_commands import help_rows

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
            rows.append([c.strip().replace("\\|", "|") for c in cells])
    return rows[1:]  # without the header


def test_the_slash_command_table_is_the_command_table() -> None:
    section = README.split("<!-- slash-commands")[1].split("<!-- /slash-commands -->")[0]
    rows = [(usage.strip("`"), does) for usage, does in table_rows(section)]
    assert rows == help_rows()


def help_keys() -> set[str]:
    """Every key the chat's help (F1) lists, as it names them ("Ctrl+T", "PageUp")."""
    from qwen3tui.tui.app import Qwen3App
    from qwen3tui.tui.chat_screen import ChatScreen
    from qwen3tui.tui.key_help import composer_rows, widget_sections
    from qwen3tui.tui.screens.help import screen_key_rows

    rows = screen_key_rows(ChatScreen, Qwen3App) + composer_rows()
    rows += [row for _, section in widget_sections() for row in section]
    # "Any letter" (type to search) is not a key's name: the table says it in words.
    return {key for keys, _ in rows for key in keys.split(" / ") if " " not in key}


def test_every_key_in_the_help_is_in_the_key_table() -> None:
    section = README.split("## In the chat")[1].split("<!-- slash-commands")[0]
    table = " ".join(cell for row in table_rows(section) for cell in row)
    missing = [
        key
        for key in sorted(help_keys())
        if not re.search(rf"(?<![\w+]){re.escape(key)}(?![\w+])", table)
    ]
    assert not missing, f"keys in the help but not in README's key table: {missing}"


def test_every_environment_variable_the_code_reads_is_in_the_readme_table() -> None:
    section = README.split("## Environment variables")[1].split("\n## ")[0]
    documented = {name for row in table_rows(section) for name in re.findall(r"`(\w+)`", row[0])}
    source = "\n".join(p.read_text() for p in (ROOT / "qwen3tui").rglob("*.py"))
    read = set(re.findall(r"\b(QWEN3TUI_[A-Z_]+)\b", source))
    assert read <= documented, f"not in README: {sorted(read - documented)}"


def test_the_test_command_is_what_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    blocks = re.findall(r"```sh\n(.*?)\n```", README, re.S)
    test_line = next(b for b in blocks if "pytest" in b)
    command = test_line.split("&& ", 3)[-1]  # what follows the venv and its activation
    assert command in ci
