"""Which thinking modes a checkpoint offers, decided from what its chat template renders.

- "hybrid": the original Qwen3; `enable_thinking` switches thinking on or off per turn.
- "thinking": thinking-only (the Thinking-2507 releases); the generation prompt already opens the
  think block, the model always reasons first.
- "instruct": instruct-only (the Instruct-2507 releases); no think block at all.

Torch-free and Jinja-free: the UI and the CLI use `thinking_switch_note` to explain a switch the
model cannot make.
"""

from __future__ import annotations

from typing import Literal

ThinkingMode = Literal["hybrid", "thinking", "instruct"]
THINKING_MODES: tuple[ThinkingMode, ...] = ("hybrid", "thinking", "instruct")

THINK_START = "<think>"
THINK_END = "</think>"


def ends_inside_think_block(text: str) -> bool:
    """Whether `text` (a generation prompt) leaves a think block open for the model."""
    return text.rfind(THINK_START) > text.rfind(THINK_END)


def classify_generation_prompts(thinking_on: str, thinking_off: str) -> ThinkingMode | None:
    """The mode from the generation prompt a template adds with enable_thinking on and off
    (the text after the conversation). None when it matches no known kind."""
    on_open, off_open = ends_inside_think_block(thinking_on), ends_inside_think_block(thinking_off)
    if thinking_on == thinking_off:
        # The switch is ignored: the template either always opens the block or never does
        # (a template that always writes an empty, closed block cannot think either).
        return "thinking" if on_open else "instruct"
    if not off_open:
        return "hybrid"  # "off" closes or omits the block, "on" leaves the model free to think
    return None


def resolve_thinking(mode: ThinkingMode, wanted: bool) -> bool:
    """Whether a turn thinks, given the model's mode and what the user asked for."""
    if mode == "thinking":
        return True
    if mode == "instruct":
        return False
    return wanted


def thinking_switch_note(mode: ThinkingMode, wanted: bool) -> str | None:
    """One line telling the user why their thinking switch cannot take effect, or None."""
    if mode == "thinking" and not wanted:
        return (
            "This model always thinks (thinking-only); thinking cannot be turned off"
            " - use the thinking budget to keep it short."
        )
    if mode == "instruct" and wanted:
        return "This model has no thinking mode (instruct-only); it always answers directly."
    return None


def thinking_mode_label(mode: ThinkingMode) -> str:
    """A short label for status bars and model lists."""
    return {"hybrid": "thinking on/off", "thinking": "thinking-only", "instruct": "instruct-only"}[
        mode
    ]
