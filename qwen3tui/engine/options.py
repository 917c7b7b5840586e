"""What the caller asks of one generation: thinking mode, budget and sampling."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace


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
