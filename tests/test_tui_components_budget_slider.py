"""The thinking-budget slider: log-scale steps, snapping, keyboard, mouse, messages, disabled."""

from __future__ import annotations

import math

import pytest
from textual.app import App, ComposeResult

from qwen3tui.tui.widgets.budget_slider import (
    BUDGET_STEPS,
    BudgetSlider,
    budget_label,
    snap_budget,
)

# Content of a 40-cell slider (one row, no border): 40 - padding (2).
SLIDER_WIDTH = 40
CONTENT_LEFT = 1  # the padding
CONTENT_TOP = 0

pytestmark = pytest.mark.anyio  # anyio's pytest plugin runs the async Pilot tests on asyncio


class SliderApp(App[None]):
    CSS = f"BudgetSlider {{ width: {SLIDER_WIDTH}; max-width: {SLIDER_WIDTH}; }}"

    def __init__(self, value: int | None = 1024, disabled: bool = False) -> None:
        super().__init__()
        self.start_value = value
        self.start_disabled = disabled
        self.changes: list[tuple[BudgetSlider, int | None]] = []

    def compose(self) -> ComposeResult:
        yield BudgetSlider(self.start_value, id="budget", disabled=self.start_disabled)

    def on_budget_slider_changed(self, event: BudgetSlider.Changed) -> None:
        self.changes.append((event.control, event.value))


def rendered_line(slider: BudgetSlider) -> str:
    return slider.render().plain


def thumb_column(slider: BudgetSlider) -> int:
    return rendered_line(slider).index("●")


# --- the scale -------------------------------------------------------------------------------


def test_steps_run_from_128_to_32k_then_unlimited_on_a_log_scale() -> None:
    finite = [s for s in BUDGET_STEPS if s is not None]
    assert finite[0] == 128 and finite[-1] == 32768
    assert BUDGET_STEPS[-1] is None and BUDGET_STEPS.count(None) == 1
    ratios = [b / a for a, b in zip(finite, finite[1:], strict=False)]
    # Half-octaves: every step multiplies by 1.5 or 4/3, so two steps always double.
    assert all(1.3 < r <= 1.5 for r in ratios)
    assert all(finite[i + 2] == 2 * finite[i] for i in range(len(finite) - 2))
    for power in range(7, 16):
        assert 2**power in finite


def test_values_between_steps_snap_to_the_nearest_on_a_log_scale() -> None:
    assert snap_budget(1000) == 1024
    assert snap_budget(1300) == 1536  # log-nearer to 1536 than 1024
    assert snap_budget(1200) == 1024
    assert snap_budget(5) == 128
    assert snap_budget(10**9) == 32768  # big numbers are the top finite step, not unlimited
    assert snap_budget(None) is None
    for step in BUDGET_STEPS:
        assert snap_budget(step) == step
    # nearest in log distance, checked against every step
    for value in (150, 300, 700, 2500, 5000, 20000):
        snapped = snap_budget(value)
        best = min(abs(math.log(s / value)) for s in BUDGET_STEPS if s is not None)
        assert abs(math.log(snapped / value)) == pytest.approx(best)


def test_snapping_rejects_non_numbers() -> None:
    with pytest.raises(TypeError):
        snap_budget("1024")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        snap_budget(True)  # type: ignore[arg-type]


def test_labels_read_as_tokens_or_unlimited() -> None:
    assert budget_label(1024) == "1,024 tokens"
    assert budget_label(None) == "unlimited"


# --- the widget ------------------------------------------------------------------------------


async def test_shows_the_current_value_and_posts_nothing_for_the_start_value() -> None:
    app = SliderApp(4096)
    async with app.run_test() as pilot:
        slider = app.query_one(BudgetSlider)
        await pilot.pause()
        assert slider.value == 4096
        assert rendered_line(slider).endswith("4,096 tokens")
        assert app.changes == []


async def test_a_start_value_between_steps_is_held_exactly() -> None:
    app = SliderApp(3000)
    async with app.run_test():
        slider = app.query_one(BudgetSlider)
        assert slider.value == 3000
        assert rendered_line(slider).endswith("3,000 tokens")
        assert slider.index == BUDGET_STEPS.index(3072)  # the thumb at the nearest step


async def test_a_value_below_the_first_step_is_held_and_arrows_move_to_the_steps_beyond() -> None:
    app = SliderApp(30)
    async with app.run_test() as pilot:
        slider = app.query_one(BudgetSlider)
        slider.focus()
        assert slider.value == 30
        await pilot.press("right")
        assert slider.value == 128
        slider.value = 1000
        await pilot.press("left")
        assert slider.value == 768
        slider.value = 1000
        await pilot.press("right")
        assert slider.value == 1024
        slider.value = 1000
        await pilot.press("pageup")  # two steps beyond
        assert slider.value == 1536
        slider.value = 50
        await pilot.press("left")
        assert slider.value == 128  # nothing lower on the track: its first step


async def test_arrow_keys_step_and_stop_at_the_ends() -> None:
    app = SliderApp(1024)
    async with app.run_test() as pilot:
        slider = app.query_one(BudgetSlider)
        slider.focus()
        await pilot.press("right")
        assert slider.value == 1536
        await pilot.press("left", "left")
        assert slider.value == 768
        await pilot.press("home")
        assert slider.value == 128
        await pilot.press("left")
        assert slider.value == 128
        await pilot.press("end")
        assert slider.value is None
        assert rendered_line(slider).endswith("unlimited")
        await pilot.press("right")
        assert slider.value is None
        await pilot.press("left")
        assert slider.value == 32768


async def test_plus_and_minus_also_step() -> None:
    app = SliderApp(1024)
    async with app.run_test() as pilot:
        slider = app.query_one(BudgetSlider)
        slider.focus()
        await pilot.press("plus")
        assert slider.value == 1536
        await pilot.press("minus", "minus")
        assert slider.value == 768


async def test_page_keys_move_a_whole_octave() -> None:
    app = SliderApp(1024)
    async with app.run_test() as pilot:
        slider = app.query_one(BudgetSlider)
        slider.focus()
        await pilot.press("pageup")
        assert slider.value == 2048
        await pilot.press("pagedown", "pagedown")
        assert slider.value == 512


async def test_changed_is_posted_for_user_and_programmatic_changes() -> None:
    app = SliderApp(1024)
    async with app.run_test() as pilot:
        slider = app.query_one(BudgetSlider)
        slider.focus()
        await pilot.press("right")
        slider.value = None
        slider.value = 100  # held exactly
        await pilot.pause()
        assert app.changes == [(slider, 1536), (slider, None), (slider, 100)]
        # Setting the same value again is not a change.
        slider.value = 100
        await pilot.pause()
        assert len(app.changes) == 3


async def test_the_thumb_moves_along_the_track_with_the_value() -> None:
    app = SliderApp(128)
    async with app.run_test():
        slider = app.query_one(BudgetSlider)
        columns = []
        for step in BUDGET_STEPS:
            slider.value = step
            columns.append(thumb_column(slider))
        assert columns[0] == 0
        assert columns == sorted(columns) and len(set(columns)) == len(columns)


async def test_clicking_the_track_ends_selects_smallest_and_unlimited() -> None:
    app = SliderApp(1024)
    async with app.run_test() as pilot:
        slider = app.query_one(BudgetSlider)
        slider.value = None
        last_cell = thumb_column(slider)
        await pilot.click(slider, offset=(CONTENT_LEFT, CONTENT_TOP))
        assert slider.value == 128
        await pilot.click(slider, offset=(CONTENT_LEFT + last_cell, CONTENT_TOP))
        assert slider.value is None


async def test_clicking_where_a_step_is_drawn_selects_that_step() -> None:
    app = SliderApp(128)
    async with app.run_test() as pilot:
        slider = app.query_one(BudgetSlider)
        for step in (512, 4096, 24576):
            slider.value = step
            column = thumb_column(slider)
            slider.value = 128
            await pilot.click(slider, offset=(CONTENT_LEFT + column, CONTENT_TOP))
            assert slider.value == step
            assert app.changes[-1] == (slider, step)


async def test_clicking_the_label_changes_nothing() -> None:
    app = SliderApp(1024)
    async with app.run_test() as pilot:
        slider = app.query_one(BudgetSlider)
        label_cell = len(rendered_line(slider)) - 2
        await pilot.click(slider, offset=(CONTENT_LEFT + label_cell, CONTENT_TOP))
        assert slider.value == 1024


async def test_dragging_moves_the_value_with_the_pointer() -> None:
    app = SliderApp(128)
    async with app.run_test() as pilot:
        slider = app.query_one(BudgetSlider)
        slider.value = 8192
        target = thumb_column(slider)
        slider.value = 128
        await pilot.pause()
        app.changes.clear()
        await pilot.mouse_down(slider, offset=(CONTENT_LEFT, CONTENT_TOP))
        await pilot.hover(slider, offset=(CONTENT_LEFT + target // 2, CONTENT_TOP))
        await pilot.hover(slider, offset=(CONTENT_LEFT + target, CONTENT_TOP))
        await pilot.mouse_up(slider, offset=(CONTENT_LEFT + target, CONTENT_TOP))
        assert slider.value == 8192
        # It passed through steps on the way, each announced.
        values = [value for _, value in app.changes]
        assert values[-1] == 8192 and len(values) >= 2
        # Once released, moving the pointer no longer drags.
        await pilot.hover(slider, offset=(CONTENT_LEFT, CONTENT_TOP))
        assert slider.value == 8192


async def test_a_disabled_slider_ignores_keys_and_clicks_but_still_takes_values() -> None:
    app = SliderApp(1024, disabled=True)
    async with app.run_test() as pilot:
        slider = app.query_one(BudgetSlider)
        slider.focus()
        await pilot.press("right", "end")
        await pilot.click(slider, offset=(CONTENT_LEFT, CONTENT_TOP))
        assert slider.value == 1024
        assert app.changes == []
        slider.value = 2048
        await pilot.pause()
        assert app.changes == [(slider, 2048)]
        slider.disabled = False
        slider.focus()
        await pilot.press("right")
        assert slider.value == 3072


async def test_a_tooltip_can_explain_the_slider() -> None:
    slider = BudgetSlider(1024, tooltip="Thinking budget (/budget N|off)")
    assert slider.tooltip == "Thinking budget (/budget N|off)"
