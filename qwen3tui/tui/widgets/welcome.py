"""The welcome view of an empty chat: which model is loaded, its thinking mode, and the few keys
that matter. Shown until the first message; the help screen (F1) lists everything else."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

MODE_WORDS = {
    "hybrid": "hybrid: thinks or not, as you choose (Ctrl+T)",
    "thinking": "thinking-only: it always thinks first",
    "instruct": "instruct-only: it answers without thinking",
}

KEYS: tuple[tuple[str, str], ...] = (
    ("Enter", "send (Shift+Enter: a new line)"),
    ("Ctrl+T", "thinking on or off"),
    ("Ctrl+G", "answer now, while it thinks"),
    ("Esc", "stop the reply"),
    ("F1", "help: every key and /command"),
)


def welcome_text(model: str, mode: str) -> Text:
    text = Text(no_wrap=False, end="")
    text.append(model, style="bold")
    text.append("\n")
    text.append(MODE_WORDS.get(mode, mode), style="italic")
    text.append("\n\n")
    width = max(len(key) for key, _ in KEYS)
    for i, (key, does) in enumerate(KEYS):
        text.append(f"{key:<{width}}", style="bold")
        text.append(f"  {does}" + ("\n" if i < len(KEYS) - 1 else ""))
    return text


class Welcome(Static):
    """Shown while the conversation is empty (the chat screen decides when)."""

    def show_model(self, model: str, mode: str) -> None:
        self.update(welcome_text(model, mode))
