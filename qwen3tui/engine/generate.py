"""One reply: prefill the prompt, then sample token by token, yielding typed events.

Thinking and answer are split by token id (`<think>` / `</think>`), never by text. A reply
starts inside the think block when the prompt left one open (a hybrid Qwen3 thinking, or a
thinking-only template), or opens one itself as its first token; otherwise it is all answer
(instruct-only models). The thinking budget (Qwen3 technical report, section 4.3) closes the
block by prefilling a fixed sentence when the model has thought for N tokens; the user's
"answer now" request closes it the same way at the next step.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from .decode_step import EagerStep, GraphedStep, HostToken, make_step
from .events import AnswerDelta, Event, Summary, ThinkingDelta, ThinkingDone, Timings, Usage
from .kv_cache import KVCache
from .model import Qwen3
from .options import SamplingParams
from .sampler import Sampler
from .tokenizer import Qwen3Tokenizer, StreamDecoder

BUDGET_STOP_TEXT = (
    "\n\nConsidering the limited time by the user, I have to give the solution based on the"
    " thinking directly now.\n</think>\n\n"
)
# Long prompts are prefilled in chunks to bound activation memory. A CPU's matmuls are already
# efficient at 512 rows; a GPU wants big chunks to fill its cores.
PREFILL_CHUNK = {"cuda": 2048}
PREFILL_CHUNK_DEFAULT = 512


@functools.lru_cache(maxsize=8)
def budget_stop_ids(tokenizer: Qwen3Tokenizer) -> tuple[int, ...]:
    """BUDGET_STOP_TEXT's ids, encoded once per tokenizer: not on each reply's way to its
    first token (a quarter of a millisecond)."""
    return tuple(tokenizer.encode(BUDGET_STOP_TEXT))


def prompt_opens_thinking(prompt_ids: Sequence[int], tokenizer: Qwen3Tokenizer) -> bool:
    """Whether the prompt's last turn (its generation prompt) leaves a think block open."""
    start = next(
        (i for i in range(len(prompt_ids) - 1, -1, -1) if prompt_ids[i] == tokenizer.im_start_id),
        0,
    )
    state = False
    for token in prompt_ids[start:]:
        if token == tokenizer.think_start_id:
            state = True
        elif token == tokenizer.think_end_id:
            state = False
    return state


@dataclass(frozen=True)
class Request:
    prompt_ids: list[int]
    opens_thinking: bool  # the prompt ends inside an open <think> block
    thinking_budget: int | None
    max_new_tokens: int
    sampling: SamplingParams


class _Split:
    """Routes tokens to the thinking or the answer stream and counts them."""

    def __init__(self, tokenizer: Qwen3Tokenizer, thinking: bool, started: float) -> None:
        self.tok = tokenizer
        self.in_thinking = thinking
        self.thought = thinking  # a think block was open at some point of the reply
        self.thinking_tokens = 0  # sampled by the model inside the block
        self.answer_tokens = 0
        self.thinking_text: list[str] = []
        self.answer_text: list[str] = []
        self.budget_hit = False
        self.cut_by_user = False
        self.started = started
        self.thinking_seconds = 0.0
        self._think = StreamDecoder(tokenizer)
        self._answer = StreamDecoder(tokenizer)

    def feed(self, token: int, *, sampled: bool) -> list[Event]:
        events: list[Event] = []
        if token in self.tok.eos_token_ids:
            return self.finish()
        if token == self.tok.think_start_id and not (self.thought or self.answer_tokens):
            # The model opened the block itself, as its first token (a template that leaves
            # it to the model): its reasoning is thinking all the same.
            self.in_thinking = self.thought = True
            return events
        if self.in_thinking:
            if token == self.tok.think_end_id:
                self._emit_thinking(self._think.flush(), events)
                self.in_thinking = False
                self.thinking_seconds = time.perf_counter() - self.started
                events.append(
                    ThinkingDone(
                        self.thinking_tokens,
                        self.thinking_seconds,
                        self.budget_hit,
                        self.cut_by_user,
                    )
                )
                return events
            if sampled:
                self.thinking_tokens += 1
            self._emit_thinking(self._think.push(token), events)
            return events
        if sampled:
            self.answer_tokens += 1
        self._emit_answer(self._answer.push(token), events)
        return events

    def finish(self) -> list[Event]:
        events: list[Event] = []
        self._emit_thinking(self._think.flush(), events)
        self._emit_answer(self._answer.flush(), events)
        return events

    def _emit_thinking(self, text: str, events: list[Event]) -> None:
        if not self.thinking_text:
            text = text.lstrip("\n")  # the "\n" after <think> when the model wrote it
        if text:
            self.thinking_text.append(text)
            events.append(ThinkingDelta(text, self.thinking_tokens))

    def _emit_answer(self, text: str, events: list[Event]) -> None:
        if not self.answer_text:
            text = text.lstrip("\n")  # Qwen opens the answer with blank lines after </think>
        if text:
            self.answer_text.append(text)
            events.append(AnswerDelta(text))


def prefill(
    model: Qwen3,
    cache: KVCache,
    ids: list[int],
    stop: Callable[[], bool] | None = None,
    step: EagerStep | GraphedStep | None = None,
) -> torch.Tensor | None:
    """Append `ids` to the cache chunk by chunk; the logits (vocab,) of the last one.

    `stop` is asked between chunks: when it says so, what is done stays in the cache and
    None is returned. A `step` with prefill graphs (CUDA) runs the chunks it can.
    """
    device = model.rope_cos.device
    size = PREFILL_CHUNK.get(device.type, PREFILL_CHUNK_DEFAULT)
    logits = None
    for i in range(0, len(ids), size):
        if stop is not None and stop():
            return None
        chunk = ids[i : i + size]
        logits = step.prefill_chunk(chunk, cache.length) if step is not None else None
        if logits is None:
            t = torch.tensor([chunk], dtype=torch.long, device=device)
            logits = model(t, cache.length, cache)[0, -1]
        cache.tokens.extend(chunk)  # only after the step ran: an interrupt leaves it consistent
    return logits


def generate(
    model: Qwen3,
    cache: KVCache,
    tokenizer: Qwen3Tokenizer,
    request: Request,
    cancel: threading.Event | None = None,
    step: EagerStep | GraphedStep | None = None,
    answer_now: threading.Event | None = None,
) -> Iterator[Event]:
    """Stream one reply. `cancel` ends it; `answer_now` (the user's request) ends its thinking
    at the next step as the budget does, and the model answers."""
    device = model.rope_cos.device
    started = time.perf_counter()

    with torch.inference_mode():
        reused = cache.reusable_prefix(request.prompt_ids)
        cache.truncate(reused)
        prefill_ids = request.prompt_ids[reused:]
        logits = prefill(model, cache, prefill_ids, step=step)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # so the prefill time is the GPU's, not the launch
        prefill_s = time.perf_counter() - started

        split = _Split(tokenizer, request.opens_thinking, started)
        sampler = Sampler(request.sampling, logits.shape[-1], device)
        budget = request.thinking_budget
        budget_ids = list(budget_stop_ids(tokenizer))
        generated: list[int] = []
        sampled = 0
        first_token_at = last_token_at = None
        finish = "length"

        def over_budget() -> bool:
            if not split.in_thinking or len(budget_ids) > cache.free:
                return False
            if answer_now is not None and answer_now.is_set():
                split.cut_by_user = True
                return True
            return budget is not None and split.thinking_tokens >= budget

        def close_thinking() -> Iterator[Event]:
            # Out of thinking budget, or the user wants the answer now: close the block for the
            # model with a prefilled sentence (never sampled); the caller then prefills it and
            # the model answers.
            split.budget_hit = not split.cut_by_user
            for injected in budget_ids:
                yield from split.feed(injected, sampled=False)
            generated.extend(budget_ids)

        if over_budget():  # a budget of 0 (or "answer now" already): no thinking at all
            yield from close_thinking()
            logits = prefill(model, cache, budget_ids, step=step)
        step = step or make_step(model, cache)
        host = HostToken(device)
        overlap = device.type == "cuda"  # kernels run asynchronously only there
        drawn = None  # the next token where the step drew it, else it is drawn from `logits`
        while True:
            if cancel is not None and cancel.is_set():
                finish = "cancelled"
                break
            if sampled >= request.max_new_tokens or cache.free < 1:
                break
            sampled_token = drawn if drawn is not None else sampler(logits)
            host.start(sampled_token, step.drawn_host if drawn is not None else None)
            pos, drawn = cache.length, None
            if overlap:
                # Feed the token before the host knows it: the GPU computes the next token
                # while the host streams text. Wasted only if the reply ends here.
                drawn = step.next_token(sampled_token, pos, sampler)
            token = host.get()
            if overlap:
                cache.tokens.append(token)
            sampled += 1
            last_token_at = time.perf_counter()
            first_token_at = first_token_at or last_token_at
            generated.append(token)
            yield from split.feed(token, sampled=True)
            if token in tokenizer.eos_token_ids:
                finish = "stop"
                break
            if not overlap:
                # A synchronous device: the caller had the token first, now compute onwards.
                drawn = step.next_token(sampled_token, pos, sampler)
                cache.tokens.append(token)
            if over_budget():
                yield from close_thinking()
                logits, drawn = prefill(model, cache, budget_ids, step=step), None
        yield from split.finish()

    decode_s = (last_token_at - first_token_at) if first_token_at else 0.0
    yield Summary(
        finish_reason=finish,
        thinking="".join(split.thinking_text).strip(),
        answer="".join(split.answer_text),
        thinking_enabled=split.thought,  # what happened, whatever the user asked for
        thinking_budget=request.thinking_budget,
        thinking_budget_hit=split.budget_hit,
        usage=Usage(len(request.prompt_ids), split.thinking_tokens, split.answer_tokens),
        timings=Timings(
            ttft_s=(first_token_at - started) if first_token_at else 0.0,
            prefill_tok_s=len(prefill_ids) / prefill_s if prefill_s > 0 else 0.0,
            decode_tok_s=(sampled - 1) / decode_s if decode_s > 0 else 0.0,
            thinking_s=split.thinking_seconds,
            total_s=time.perf_counter() - started,
        ),
        token_ids=generated,
        prefilled_tokens=len(prefill_ids),
        thinking_cut_by_user=split.cut_by_user,
    )
