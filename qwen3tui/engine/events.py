"""Typed events that generation yields to its caller.

Pure dataclasses (no torch) so the UI and the store can import them freely.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class ContextNotice:
    """Older turns were dropped so the prompt fits the context window."""

    dropped_messages: int
    message: str


@dataclass(frozen=True)
class ThinkingDelta:
    """New reasoning text from inside the `<think>` block."""

    text: str
    thinking_tokens: int  # model-sampled thinking tokens so far (the budget counts these)


@dataclass(frozen=True)
class ThinkingDone:
    """The `<think>` block closed: by the model, by the thinking budget, or by the user's
    "answer now"."""

    thinking_tokens: int
    seconds: float
    budget_hit: bool
    cut_by_user: bool = False


@dataclass(frozen=True)
class AnswerDelta:
    """New answer text (after `</think>`, or the whole reply when not thinking)."""

    text: str


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    thinking_tokens: int = 0
    answer_tokens: int = 0


@dataclass(frozen=True)
class Timings:
    ttft_s: float = 0.0
    prefill_tok_s: float = 0.0
    decode_tok_s: float = 0.0
    thinking_s: float = 0.0
    total_s: float = 0.0


@dataclass(frozen=True)
class Summary:
    """The last event of every generation."""

    finish_reason: FinishReason
    thinking: str
    answer: str
    thinking_enabled: bool
    thinking_budget: int | None
    thinking_budget_hit: bool
    usage: Usage
    timings: Timings
    token_ids: list[int] = field(default_factory=list)  # every generated id, budget text included
    prefilled_tokens: int = 0  # prompt tokens actually computed (the rest came from the KV cache)
    thinking_cut_by_user: bool = False  # "answer now" closed the think block


Event = ContextNotice | ThinkingDelta | ThinkingDone | AnswerDelta | Summary
