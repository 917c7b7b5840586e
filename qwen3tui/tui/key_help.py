"""Which keys the chat's help lists besides the chat screen's and the app's own bindings: the
keys the composer reads itself, and the bindings of the other widgets and screens."""

from __future__ import annotations

from textual.dom import DOMNode

from .screens.help import KeyRows, binding_rows, key_label, own_bindings
from .screens.sessions import SessionsScreen, SessionTable
from .widgets.budget_slider import BudgetSlider
from .widgets.composer import NEWLINE_KEYS

# Widgets with key bindings of their own, each listed under its heading. A widget that gets
# key bindings gets a section here (e.g. the keys of a message in the chat).
WIDGET_SECTIONS: tuple[tuple[str, tuple[type[DOMNode], ...]], ...] = (
    ("Thinking budget slider (Tab to it)", (BudgetSlider,)),
    ("Sessions (Ctrl+O)", (SessionsScreen, SessionTable)),
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
        (heading, binding_rows(b for cls in classes for b in own_bindings(cls)))
        for heading, classes in WIDGET_SECTIONS
    ]
