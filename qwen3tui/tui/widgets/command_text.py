"""Messages that name commands: each `code span` is shown in bold, without its backticks."""

from __future__ import annotations

from rich.text import Text


def command_text(text: str, style: str = "bold") -> Text:
    """`text` with each backticked span in `style` and the backticks gone; never read as markup.
    Unpaired backticks are left as they are."""
    if text.count("`") % 2:
        return Text(text)
    out = Text()
    for i, part in enumerate(text.split("`")):
        out.append(part, style=style if i % 2 else "")
    return out
