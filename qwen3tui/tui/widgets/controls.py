"""The controls row under the composer: the thinking Switch and the thinking-budget slider.

Both act on the next turn; the chat screen saves them with the session. The switch's state is
also said in words (ON / OFF, in colours every theme contrasts), and the slider looks disabled
while thinking is off (it still takes a value, for when thinking is on again).
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
        self.state = Label("", id="thinking-state")
        self._show_state(thinking)

    def compose(self) -> ComposeResult:
        yield Label("Thinking", classes="control-label")
        yield self.switch
        yield self.state
        yield Label("Budget", classes="control-label")
        yield self.slider

    def on_switch_changed(self, event: Switch.Changed) -> None:
        self._show_state(event.value)  # not stopped: the chat screen acts on it too

    def _show_state(self, on: bool) -> None:
        self.state.update("ON" if on else "OFF")
        self.state.set_class(on, "-on")
        self.state.set_class(not on, "-off")
        self.set_class(not on, "-thinking-off")

    def show_mode(self, mode: str, note: str | None) -> None:
        """Lock the switch where the model allows one mode only; the tooltip says why.

        thinking-only: the switch is on and locked, the budget still applies; instruct-only:
        both are off and locked.
        """
        fixed = mode != "hybrid"
        self.switch.disabled = fixed
        self.slider.disabled = mode == "instruct"
        self.switch.tooltip = note if fixed and note else "Thinking (/think, /no_think)"
