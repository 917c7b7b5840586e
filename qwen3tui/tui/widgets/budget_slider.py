"""A one-line slider for the thinking budget: log-scale token steps plus "unlimited".

Steps are half-octaves (x1, x1.5, x2, ...) from 128 to 32,768 tokens. Whole octaves jump too far
in the range people actually use (2k -> 4k -> 8k), while half-octaves still land on round,
recognisable numbers (1,536, 3,072, 6,144, 12k, 24k) and keep the track short enough (18 stops)
to click precisely in a narrow controls row. The last stop, `None`, means no budget.

The steps are for the mouse and the arrow keys only: a value set in code (`/budget 30`) is held
exactly, its thumb drawn at the nearest step, and the next arrow press moves to the step beyond.
"""

from __future__ import annotations

import math
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget


def _half_octave_steps(low: int, high: int) -> tuple[int, ...]:
    steps: list[int] = []
    value = low
    while value <= high:
        steps.append(value)
        if value * 3 // 2 <= high:
            steps.append(value * 3 // 2)
        value *= 2
    return tuple(steps)


MIN_BUDGET = 128
MAX_BUDGET = 32768
BUDGET_STEPS: tuple[int | None, ...] = (*_half_octave_steps(MIN_BUDGET, MAX_BUDGET), None)
"""Every value the slider can take, lowest first; `None` (unlimited) is the top stop."""


def snap_budget(value: int | None) -> int | None:
    """The step nearest to `value` on a log scale; `None` stays unlimited."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"a thinking budget is a number of tokens or None, not {value!r}")
    if value <= MIN_BUDGET:
        return MIN_BUDGET
    if value >= MAX_BUDGET:
        return MAX_BUDGET
    finite = [step for step in BUDGET_STEPS if step is not None]
    return min(finite, key=lambda step: abs(math.log(step) - math.log(value)))


def exact_budget(value: int | None) -> int | None:
    """A budget as given: a whole number of tokens ≥ 0, or `None` (unlimited)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"a thinking budget is a number of tokens or None, not {value!r}")
    return max(0, int(value))


def budget_label(value: int | None) -> str:
    """How a budget reads on screen: "1,024 tokens" or "unlimited"."""
    return "unlimited" if value is None else f"{value:,} tokens"


_LABEL_WIDTH = max(len(budget_label(step)) for step in BUDGET_STEPS)


class BudgetSlider(Widget, can_focus=True):
    """Choose a thinking budget with the keyboard or the mouse."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left,minus", "step(-1)", "Smaller budget", show=False),
        Binding("right,plus,equals_sign", "step(1)", "Larger budget", show=False),
        Binding("pagedown", "step(-2)", "Halve budget", show=False),
        Binding("pageup", "step(2)", "Double budget", show=False),
        Binding("home", "first", "Smallest budget", show=False),
        Binding("end", "last", "Unlimited", show=False),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "budget-slider--filled",
        "budget-slider--empty",
        "budget-slider--thumb",
        "budget-slider--label",
    }

    DEFAULT_CSS = """
    BudgetSlider {
        background: $surface;
        height: 1;
        width: 1fr;
        min-width: 24;
        max-width: 56;
        padding: 0 1;
        pointer: pointer;

        & > .budget-slider--filled { color: $primary; }
        & > .budget-slider--empty { color: $foreground 25%; }
        & > .budget-slider--thumb { color: $foreground; text-style: bold; }
        & > .budget-slider--label { color: $foreground; }

        /* One row, no border (the chat gets the rows): focus shows as a brighter background. */
        &:focus {
            background: $primary 30%;
            & > .budget-slider--thumb { color: $accent; }
        }
        &:hover > .budget-slider--thumb { color: $accent-lighten-1; }
        &:disabled {
            & > .budget-slider--filled { color: $foreground 25%; }
            & > .budget-slider--thumb { color: $foreground 40%; }
            & > .budget-slider--label { color: $foreground-disabled; }
        }
    }
    """

    value: reactive[int | None] = reactive(1024, init=False)
    """The chosen budget in tokens; `None` is unlimited. Held exactly, whatever the steps."""

    class Changed(Message):
        """Posted when the budget changes, by the user or by code."""

        def __init__(self, slider: BudgetSlider, value: int | None) -> None:
            super().__init__()
            self.slider: BudgetSlider = slider
            self.value: int | None = value

        @property
        def control(self) -> BudgetSlider:
            """Alias for self.slider."""
            return self.slider

    def __init__(
        self,
        value: int | None = 1024,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        disabled: bool = False,
        tooltip: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        if tooltip is not None:
            self.tooltip = tooltip
        # Like Switch: the starting value is not a change, so no message for it.
        self.set_reactive(BudgetSlider.value, exact_budget(value))
        self._dragging = False

    @property
    def index(self) -> int:
        """Position of the current value among BUDGET_STEPS (the nearest step when between)."""
        return BUDGET_STEPS.index(snap_budget(self.value))

    def validate_value(self, value: int | None) -> int | None:
        return exact_budget(value)

    def watch_value(self, value: int | None) -> None:
        self.post_message(self.Changed(self, value))

    def _move_to(self, index: int) -> None:
        index = max(0, min(len(BUDGET_STEPS) - 1, index))
        self.value = BUDGET_STEPS[index]

    def action_step(self, delta: int) -> None:
        value = self.value
        if value is None or value in BUDGET_STEPS:
            self._move_to(self.index + delta)
            return
        # Between steps: the first move goes to the step beyond the value in that direction.
        finite = [step for step in BUDGET_STEPS if step is not None]
        if delta > 0:
            above = [i for i, step in enumerate(finite) if step > value]
            self._move_to((above[0] if above else len(finite)) + delta - 1)
        else:
            below = [i for i, step in enumerate(finite) if step < value]
            self._move_to((below[-1] if below else 0) + delta + 1)

    def action_first(self) -> None:
        self._move_to(0)

    def action_last(self) -> None:
        self._move_to(len(BUDGET_STEPS) - 1)

    # Geometry: the track fills the content width left of the label.

    def _track_width(self) -> int:
        return max(2, self.content_region.width - _LABEL_WIDTH - 1)

    def _cell_of(self, index: int) -> int:
        return round(index * (self._track_width() - 1) / (len(BUDGET_STEPS) - 1))

    def _index_at(self, x: int) -> int:
        x = max(0, min(self._track_width() - 1, x))
        return round(x * (len(BUDGET_STEPS) - 1) / (self._track_width() - 1))

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return 1

    def render(self) -> Text:
        track = self._track_width()
        thumb = self._cell_of(self.index)
        text = Text(no_wrap=True, end="")
        style = self.get_component_rich_style
        text.append("━" * thumb, style("budget-slider--filled"))
        text.append("●", style("budget-slider--thumb"))
        text.append("─" * (track - thumb - 1), style("budget-slider--empty"))
        text.append(" ")
        text.append(
            budget_label(self.value).rjust(_LABEL_WIDTH),
            style("budget-slider--label"),
        )
        return text

    # Mouse: press on the track jumps there; holding and moving drags the thumb.

    def _on_mouse_down(self, event: events.MouseDown) -> None:
        if self.is_disabled or event.button != 1:
            return
        offset = event.get_content_offset(self)
        if offset is None or offset.x >= self._track_width():
            return
        event.stop()
        self._dragging = True
        self.capture_mouse()
        self._move_to(self._index_at(offset.x))

    def _on_mouse_move(self, event: events.MouseMove) -> None:
        if not self._dragging or self.is_disabled:
            return
        event.stop()
        self._move_to(self._index_at(event.get_content_offset_capture(self).x))

    def _on_mouse_up(self, event: events.MouseUp) -> None:
        if self._dragging:
            event.stop()
            self._dragging = False
            self.release_mouse()

    def _on_mouse_release(self, event: events.MouseRelease) -> None:
        self._dragging = False
