"""A scripted stand-in for the engine: same `chat()` / `info` / `count_tokens` interface.

It yields a fixed thinking text and answer as events (with small sleeps, from the worker
thread like the real engine), records every call, honours the thinking budget, the
cancel event and "answer now" (which ends the thinking at the next token, as the budget does),
and reports fixed timings so screenshots are deterministic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from qwen3tui.engine.events import (
    AnswerDelta,
    Event,
    Summary,
    ThinkingDelta,
    ThinkingDone,
    Timings,
    Usage,
)
from qwen3tui.engine.info import EngineInfo
from qwen3tui.engine.options import ChatOptions, SamplingParams, default_sampling
from qwen3tui.engine.thinking_mode import resolve_thinking

THINKING = ["Let", " me", " think", " about", " that", "."]
ANSWER = ["**Hello**", " from", " the", " fake", " engine", "."]


@dataclass
class ChatCall:
    messages: list[dict[str, str]]
    options: ChatOptions


@dataclass
class FakeEngine:
    thinking_tokens: list[str] = field(default_factory=lambda: list(THINKING))
    answer_tokens: list[str] = field(default_factory=lambda: list(ANSWER))
    delay_s: float = 0.0  # sleep before each token
    # Stop after this many tokens (thinking + answer) until `release` is set: lets a test look
    # at the screen mid-stream deterministically.
    hold_after: int | None = None
    hold_timeout_s: float = 30.0  # never hang a test run on a hold nobody releases
    thinking_seconds: float = 4.2
    decode_tok_s: float = 42.0
    ttft_s: float = 0.25
    context_length: int = 4096
    thinking_mode: str = "hybrid"  # as a chat template would say: hybrid, thinking, instruct
    calls: list[ChatCall] = field(default_factory=list)
    warmed: list[list[dict[str, str]]] = field(default_factory=list)  # prepare_next_turn calls
    release: threading.Event = field(default_factory=threading.Event)
    holding: threading.Event = field(default_factory=threading.Event)

    @property
    def info(self) -> EngineInfo:
        return EngineInfo(
            model="fake/Qwen3-Fake",
            path="/nowhere",
            device="cpu",
            dtype="float32",
            context_length=self.context_length,
            num_parameters=1000,
            thinking_mode=self.thinking_mode,
        )

    def count_tokens(self, messages: list[dict[str, str]], thinking: bool) -> int:
        return sum(len(m["content"].split()) + 4 for m in messages)

    def sampling_for(self, options: ChatOptions) -> SamplingParams:
        return options.sampling.apply(default_sampling(options.thinking, {}))

    def prepare_next_turn(
        self, messages: list[dict[str, str]], cancel: threading.Event | None = None
    ) -> int:
        self.warmed.append([dict(m) for m in messages])
        return 0

    def stop_warming(self) -> None:
        pass

    def chat(
        self,
        messages: list[dict[str, str]],
        options: ChatOptions,
        cancel: threading.Event | None = None,
        answer_now: threading.Event | None = None,
    ) -> Iterator[Event]:
        self.calls.append(ChatCall([dict(m) for m in messages], options))
        cancel = cancel or threading.Event()
        produced = 0
        thinking_text: list[str] = []
        answer_text: list[str] = []
        budget_hit = False
        cut_by_user = False

        def pace() -> bool:
            """Sleep/hold before the next token; False when cancelled."""
            nonlocal produced
            if self.hold_after is not None and produced == self.hold_after:
                self.holding.set()
                deadline = time.monotonic() + self.hold_timeout_s
                while not self.release.wait(0.01) and time.monotonic() < deadline:
                    if cancel.is_set():
                        return False
            if self.delay_s:
                time.sleep(self.delay_s)
            produced += 1
            return not cancel.is_set()

        cancelled = False
        thinking = resolve_thinking(self.thinking_mode, options.thinking)  # as the engine does
        if thinking:
            for i, token in enumerate(self.thinking_tokens):
                if options.thinking_budget is not None and i >= options.thinking_budget:
                    budget_hit = True
                    break
                if not pace():
                    cancelled = True
                    break
                if answer_now is not None and answer_now.is_set():
                    cut_by_user = True
                    break
                thinking_text.append(token)
                yield ThinkingDelta(token, len(thinking_text))
            if not cancelled:
                yield ThinkingDone(
                    len(thinking_text), self.thinking_seconds, budget_hit, cut_by_user
                )
        if not cancelled:
            for token in self.answer_tokens:
                if not pace():
                    cancelled = True
                    break
                answer_text.append(token)
                yield AnswerDelta(token)
        prompt_tokens = self.count_tokens(messages, options.thinking)
        yield Summary(
            finish_reason="cancelled" if cancelled else "stop",
            thinking="".join(thinking_text),
            answer="".join(answer_text),
            thinking_enabled=thinking,
            thinking_budget=options.thinking_budget,
            thinking_budget_hit=budget_hit,
            usage=Usage(prompt_tokens, len(thinking_text), len(answer_text)),
            timings=Timings(
                ttft_s=self.ttft_s,
                prefill_tok_s=1000.0,
                decode_tok_s=self.decode_tok_s,
                thinking_s=self.thinking_seconds,
                total_s=self.thinking_seconds + 1.0,
            ),
            thinking_cut_by_user=cut_by_user,
        )
