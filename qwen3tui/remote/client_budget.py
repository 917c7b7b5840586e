"""The thinking budget enforced from the client (Qwen3 technical report, section 4.3).

The prompt is rendered here with the model's own chat template and sent to the raw completions
endpoint, so the server generates exactly what the local engine would: the thinking is streamed
with `max_tokens = budget` and a stop on `</think>`; if the budget ran out, the fixed early-stop
sentence and `</think>` are appended to the prompt (never sampled) and a second request streams
the answer. Server-side budget switches differ from this (vLLM and SGLang end the block with a
bare `</think>`; llama.cpp's message is set for the whole server), so this path is the default.
The user's "answer now" ends the thinking request early and continues the same way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from qwen3tui.engine.events import Event, Summary, Timings, Usage
from qwen3tui.engine.options import ChatOptions, SamplingParams
from qwen3tui.engine.thinking_mode import ends_inside_think_block

from .pieces import Piece
from .reply_split import END_MARKERS, THINK_END, ReplySplitter
from .streamed_request import Request, Stats, ollama_options, openai_sampling

# The same text the local engine prefills (engine/generate.py; a test keeps the two equal).
BUDGET_STOP_TEXT = (
    "\n\nConsidering the limited time by the user, I have to give the solution based on the"
    " thinking directly now.\n</think>\n\n"
)
THINK_OPENING = "<think>\n"  # Qwen3 opens every thinking reply with this; we place it
_POLL_S = 0.02


class _EitherSet:
    """Set when either event is: the thinking request ends for a cancel or for "answer now"
    (the stream only asks `is_set` and `wait`)."""

    def __init__(self, first: threading.Event, second: threading.Event) -> None:
        self.events = (first, second)

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = _POLL_S if deadline is None else min(_POLL_S, deadline - time.monotonic())
            if left <= 0:
                return False
            self.events[0].wait(left)
        return True


@dataclass(frozen=True)
class CompletionTarget:
    """Where raw prompts go: the OpenAI completions endpoint, or Ollama's raw generate."""

    url: str
    model: str
    ollama: bool = False

    def request(
        self, prompt: str, max_tokens: int | None, stop: list[str], sampling: SamplingParams
    ) -> Request:
        if self.ollama:
            options = ollama_options(sampling, max_tokens)
            options["stop"] = stop
            body = {"model": self.model, "prompt": prompt, "raw": True, "stream": True}
            return Request(self.url, {**body, "options": options}, ndjson=True)
        body = {
            "model": self.model,
            "prompt": prompt,
            "stream": True,
            "stream_options": {"include_usage": True},
            "stop": stop,
            **openai_sampling(sampling),
        }
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        return Request(self.url, body)


def budget_prompt(rendered: str) -> str:
    """The rendered chat prompt with the think block opened, as the local engine does it (a
    template that opens the block itself is not opened twice)."""
    return rendered if ends_inside_think_block(rendered) else rendered + THINK_OPENING


def budgeted_reply(
    send: Callable[[Request, threading.Event], Iterator[Piece]],
    target: CompletionTarget,
    prompt: str,
    options: ChatOptions,
    budget: int,
    sampling: SamplingParams,
    cancel: threading.Event,
    count_prompt: Callable[[], int],
    explicit_limit: bool,
    answer_now: threading.Event | None = None,
) -> Iterator[Event]:
    """Stream one thinking reply whose thinking stops after `budget` tokens, or when
    `answer_now` is set."""
    started = time.perf_counter()
    split = ReplySplitter(expect_thinking=True, opened=True, started=started)
    limit = options.max_new_tokens
    first = Stats(started)
    first_max = min(budget, limit)
    if first_max > 0:
        request = target.request(prompt, first_max, [THINK_END, *END_MARKERS], sampling)
        thinking_stop = cancel if answer_now is None else _EitherSet(cancel, answer_now)
        for piece in send(request, thinking_stop):  # type: ignore[arg-type]
            first.see(piece)
            yield from split.feed("", piece.content)
    requested = answer_now is not None and answer_now.is_set()
    cut_by_user = False
    raw = first.text
    went_on = bool(split.answer_text)  # a server that ignored the stop went on into the answer
    if first.completion_tokens is None or went_on:
        thinking_tokens = split.thinking_pieces
    elif first.finish_reason == "stop" and not first.ended_by_eos:
        thinking_tokens = max(first.completion_tokens - 1, 0)  # it counted the `</think>`
    else:
        thinking_tokens = first.completion_tokens
    budget_hit = False
    second = Stats(time.perf_counter())
    finish = first.finish_reason or "stop"
    if cancel.is_set():
        finish = "cancelled"
        yield from split.finish()
    elif first.ended_by_eos or split.ended or (went_on and first.finish_reason == "stop"):
        yield from split.finish()  # the model ended its turn: nothing more to ask for
    elif first.finish_reason == "length" and first_max < budget:
        finish = "length"  # max_new_tokens ran out before the budget did
        yield from split.finish()
    else:
        if went_on:
            continuation = prompt + raw  # the answer was cut by max_tokens: let it go on
        elif THINK_END in raw:
            continuation = prompt + raw[: raw.index(THINK_END) + len(THINK_END)]
        elif first.finish_reason == "length" or first_max == 0 or requested:
            cut_by_user = requested and first.finish_reason != "length" and first_max > 0
            budget_hit = not cut_by_user
            sentence = BUDGET_STOP_TEXT[: BUDGET_STOP_TEXT.index(THINK_END)]
            yield from split.inject_thinking(sentence)
            continuation = prompt + raw + BUDGET_STOP_TEXT
        else:
            continuation = prompt + raw + THINK_END  # the server left its stop string out
        yield from split.close_thinking(
            budget_hit=budget_hit, thinking_tokens=thinking_tokens, cut_by_user=cut_by_user
        )
        used = first.completion_tokens if went_on and first.completion_tokens else thinking_tokens
        remaining = limit - used
        if remaining <= 0:
            finish = "length"
        else:
            request = target.request(
                continuation, remaining if explicit_limit else None, list(END_MARKERS), sampling
            )
            for piece in send(request, cancel):
                second.see(piece)
                yield from split.feed("", piece.content)
            yield from split.finish()
            finish = second.finish_reason or "cancelled"
    if second.completion_tokens is not None and not went_on:
        answer_tokens = second.completion_tokens
    else:
        answer_tokens = split.answer_pieces
    yield _summary(
        split,
        first,
        second,
        finish,
        options,
        budget,
        budget_hit,
        thinking_tokens,
        answer_tokens,
        first.prompt_tokens if first.prompt_tokens is not None else count_prompt(),
        started,
        cut_by_user,
    )


def _summary(
    split: ReplySplitter,
    first: Stats,
    second: Stats,
    finish: str,
    options: ChatOptions,
    budget: int,
    budget_hit: bool,
    thinking_tokens: int,
    answer_tokens: int,
    prompt_tokens: int,
    started: float,
    cut_by_user: bool = False,
) -> Summary:
    first_at = first.first_at or second.first_at
    last_at = second.last_at or first.last_at
    sampled = thinking_tokens + answer_tokens
    decode_s = (last_at - first_at) if first_at and last_at else 0.0
    ttft = (first_at - started) if first_at else 0.0
    return Summary(
        finish_reason=finish,  # type: ignore[arg-type]
        thinking=split.thinking,
        answer=split.answer,
        thinking_enabled=True,
        thinking_budget=budget,
        thinking_budget_hit=budget_hit,
        usage=Usage(prompt_tokens, thinking_tokens, answer_tokens),
        timings=Timings(
            ttft_s=ttft,
            prefill_tok_s=first.prompt_tok_s or (prompt_tokens / ttft if ttft > 0 else 0.0),
            decode_tok_s=(sampled - 1) / decode_s if decode_s > 0 and sampled > 1 else 0.0,
            thinking_s=split.thinking_seconds,
            total_s=time.perf_counter() - started,
        ),
        thinking_cut_by_user=cut_by_user,
    )
