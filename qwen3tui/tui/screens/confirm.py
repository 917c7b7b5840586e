"""A yes/no question in a small dialog: y / n / Esc, or the buttons."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class ConfirmScreen(ModalScreen[bool]):
    """Ask `question`; dismisses with True for yes and False for no (Esc is no)."""

    CSS_PATH = Path(__file__).with_name("confirm.tcss")

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "Cancel"),
        Binding("left,right", "switch_button", "Switch", show=False),
    ]

    def __init__(
        self,
        question: str,
        *,
        yes_label: str = "Yes",
        no_label: str = "No",
        name: str | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id)
        self.question = question
        self.yes_label = yes_label
        self.no_label = no_label

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog"):
            yield Label(self.question, id="confirm-question", markup=False)
            with Horizontal(id="confirm-buttons"):
                yield Button(f"{self.yes_label} (y)", variant="primary", id="confirm-yes")
                yield Button(f"{self.no_label} (n)", id="confirm-no")

    def on_mount(self) -> None:
        # "No" has the focus, so a stray Enter never confirms something destructive.
        self.query_one("#confirm-no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "confirm-yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    def action_switch_button(self) -> None:
        yes = self.query_one("#confirm-yes", Button)
        no = self.query_one("#confirm-no", Button)
        (no if yes.has_focus else yes).focus()
