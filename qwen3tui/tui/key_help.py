"""Which keys the chat's help lists besides the chat screen's and the app's own bindings: the
keys the composer reads itself, and the bindings of the other widgets and screens."""

from __future__ import annotations

from textual.dom import DOMNode

from .screens import sessions
from .screens.help import KeyRows, binding_rows, key_label, own_bindings
from .widgets import slash_suggestions
from .widgets.budget_slider import BudgetSlider
from .widgets.composer import NEWLINE_KEYS

# Each heading with the widgets whose key bindings it lists, then rows for the keys a widget
# reads itself (its KEY_ROWS). A widget that gets keys gets a section here (e.g. the keys of a
# message in the chat).
WIDGET_SECTIONS: tuple[tuple[str, tuple[type[DOMNode], ...], KeyRows], ...] = (
    ("Slash-command suggestions (while they show)", (), list(slash_suggestions.KEY_ROWS)),
    ("Thinking budget slider (Tab to it)", (BudgetSlider,), []),
    (
        "Sessions (Ctrl+O)",
        (sessions.SessionsScreen, sessions.SessionTable),
        list(sessions.KEY_ROWS),
    ),
)


def composer_rows() -> KeyRows:
    """The keys the composer reads itself (they are not bindings)."""
    return [
        ("Enter", "Send the message (while a reply streams: queue it, sent after)"),
        (" / ".join(key_label(k) for k in NEWLINE_KEYS), "A new line"),
        ("Up / Down", "Earlier prompts (in an empty composer)"),
        ("Tab", "Complete a /command, or a file path after @; else the next control"),
        ("Shift+Tab", "The previous control"),
    ]


def widget_sections() -> list[tuple[str, KeyRows]]:
    """Each `WIDGET_SECTIONS` heading with the keys of its widgets."""
    return [
        (heading, [*binding_rows(b for cls in classes for b in own_bindings(cls)), *rows])
        for heading, classes, rows in WIDGET_SECTIONS
    ]
