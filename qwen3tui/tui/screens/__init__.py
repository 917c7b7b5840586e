"""Modal screens of the TUI: sessions browser, help, yes/no confirmation."""

from .confirm import ConfirmScreen
from .help import HelpScreen
from .sessions import SessionsScreen, TextPromptScreen

__all__ = ["ConfirmScreen", "HelpScreen", "SessionsScreen", "TextPromptScreen"]
