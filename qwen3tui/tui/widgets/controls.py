"""The controls row under the composer: the thinking Switch and the thinking-budget slider.

Both act on the next turn; the chat screen saves them with the session.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, Switch

from .budget_slider import BudgetSlider


class Controls(Horizontal):
    def __init__(self, *, thinking: bool, budget: int | None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.switch = Switch(
            value=thinking, id="thinking-switch", tooltip="Thinking (/think, /no_think)"
        )
        self.slider = BudgetSlider(value=budget, id="budget-slider")

    def compose(self) -> ComposeResult:
        yield Label("Thinking", classes="control-label")
        yield self.switch
        yield Label("Budget", classes="control-label")
        yield self.slider

    def show_mode(self, mode: str, note: str | None) -> None:
        """Lock the switch where the model allows one mode only; the tooltip says why.

        thinking-only: the switch is on and locked, the budget still applies; instruct-only:
        both are off and locked.
        """
        fixed = mode != "hybrid"
        self.switch.disabled = fixed
        self.slider.disabled = mode == "instruct"
        self.switch.tooltip = note if fixed and note else "Thinking (/think, /no_think)"
