"""What the caller asks of one generation: thinking mode, budget and sampling."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from .errors import InvalidOptionError


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.6  # 0 means greedy
    top_p: float = 0.95
    top_k: int = 20  # 0 disables
    min_p: float = 0.0
    presence_penalty: float = 0.0
    seed: int | None = None


# Qwen's published guidance for each mode.
THINKING_DEFAULTS = SamplingParams(temperature=0.6, top_p=0.95, top_k=20, min_p=0.0)
NON_THINKING_DEFAULTS = SamplingParams(temperature=0.7, top_p=0.8, top_k=20, min_p=0.0)


@dataclass(frozen=True)
class SamplingOverrides:
    """User choices; None means "use the mode's default"."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    presence_penalty: float | None = None
    seed: int | None = None

    def apply(self, base: SamplingParams) -> SamplingParams:
        chosen = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(base, **{k: v for k, v in chosen.items() if v is not None})


@dataclass(frozen=True)
class ChatOptions:
    thinking: bool = True
    thinking_budget: int | None = None  # None: unlimited
    max_new_tokens: int = 32768
    sampling: SamplingOverrides = SamplingOverrides()


def default_sampling(thinking: bool, checkpoint: dict | None = None) -> SamplingParams:
    """Qwen's per-mode guidance, with the checkpoint's generation_config.json on top.

    A checkpoint's generation_config.json describes its default mode, which for Qwen3 is
    thinking; applying it to non-thinking turns would undo Qwen's separate guidance there.
    """
    if not thinking:
        return NON_THINKING_DEFAULTS
    checkpoint = checkpoint or {}
    chosen = {
        name: checkpoint[name]
        for name in ("temperature", "top_p", "top_k", "min_p", "presence_penalty")
        if isinstance(checkpoint.get(name), (int, float))
        and not isinstance(checkpoint.get(name), bool)
    }
    if checkpoint.get("do_sample") is False:
        chosen["temperature"] = 0.0
    return replace(THINKING_DEFAULTS, **chosen)


@dataclass(frozen=True)
class Limit:
    """The values one generation option may take."""

    kind: type  # int or float
    low: float | None  # None: no bound
    high: float | None
    low_open: bool = False  # the low end itself is not allowed
    allowed: str = ""  # the range in words, for error messages


SEED_MAX = 2**64 - 1
TOKENS_MAX = 2**31 - 1

LIMITS: dict[str, Limit] = {
    "temperature": Limit(float, 0.0, None, allowed="a number ≥ 0 (0 is greedy)"),
    "top_p": Limit(float, 0.0, 1.0, low_open=True, allowed="a number > 0 and ≤ 1"),
    "top_k": Limit(int, 0, None, allowed="a whole number ≥ 0 (0 turns it off)"),
    "min_p": Limit(float, 0.0, 1.0, allowed="a number from 0 to 1"),
    # Qwen's model cards suggest 0 to 2 against endless repetition.
    "presence_penalty": Limit(float, 0.0, 2.0, allowed="a number from 0 to 2"),
    "seed": Limit(int, 0, SEED_MAX, allowed=f"a whole number from 0 to {SEED_MAX}"),
    "max_tokens": Limit(int, 1, TOKENS_MAX, allowed="a whole number ≥ 1"),
    "thinking_budget": Limit(int, 0, TOKENS_MAX, allowed="a whole number of tokens ≥ 0"),
}
"""Every generation value's range, checked in one place for the CLI, `/set`, settings.toml,
imports and the engine itself."""


def check_value(name: str, value: object) -> int | float:
    """`value` as option `name` takes it; InvalidOptionError (one line) when it is not allowed."""
    limit = LIMITS[name]
    refused = InvalidOptionError(f"{name} = {value!r} is not allowed: use {limit.allowed}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise refused
    number: int | float
    if limit.kind is int:
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            raise refused
        number = int(value)
    else:
        number = float(value)
        if not math.isfinite(number):
            raise refused
    too_low = limit.low is not None and (
        number <= limit.low if limit.low_open else number < limit.low
    )
    too_high = limit.high is not None and number > limit.high
    if too_low or too_high:
        raise refused
    return number


def parse_value(name: str, text: str) -> int | float:
    """Option `name` from typed text ("0.7", "20", "1_000"); InvalidOptionError when it is not."""
    limit = LIMITS[name]
    cleaned = text.strip().replace("_", "")
    try:
        value: int | float = int(cleaned) if limit.kind is int else float(cleaned)
    except ValueError:
        value = math.nan  # refused below, named as typed
    try:
        return check_value(name, value)
    except InvalidOptionError:
        raise InvalidOptionError(
            f"{name} = {text.strip()} is not allowed: use {limit.allowed}"
        ) from None


def validate_options(options: ChatOptions) -> None:
    """Refuse options no generation can run with (one line naming the value and the range)."""
    check_value("max_tokens", options.max_new_tokens)
    if options.thinking_budget is not None:
        check_value("thinking_budget", options.thinking_budget)
    for f in fields(options.sampling):
        value = getattr(options.sampling, f.name)
        if value is not None:
            check_value(f.name, value)
