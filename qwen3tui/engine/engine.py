"""The engine: a loaded model, its tokenizer and template, and one KV cache reused across turns."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from . import memory_fit, threads
from .chat_template import ChatTemplate
from .config import Qwen3Config, check_tokenizer_fits
from .context import Message, fit_messages
from .decode_step import make_step
from .device import dtype_name, pick_device, pick_dtype
from .errors import EngineError
from .events import ContextNotice, Event
from .generate import Request, generate, prefill, prompt_opens_thinking
from .hub import resolve_model_dir
from .info import EngineInfo, LoadProgress
from .kv_cache import KVCache, common_prefix_length
from .model import Qwen3
from .options import ChatOptions, SamplingParams, default_sampling, validate_options
from .thinking_mode import ThinkingMode, resolve_thinking
from .tokenizer import Qwen3Tokenizer
from .weights import load_model

# A hybrid Qwen3 opens every thinking reply with this; the engine places it (thinking-only
# templates write it themselves, instruct-only models never think).
THINK_OPENING = "<think>\n"
WARM_HEADROOM = 256  # tokens a next user message and its reply's start are expected to need
WARM_GIVE_WAY_TIMEOUT_S = 60.0  # a warm-up stops within one prefill chunk, far less than this


def default_context(device: torch.device, config: Qwen3Config) -> int:
    # A full 32k cache is 3.7 GB for Qwen3-1.7B in bf16: fine on a GPU, a lot for a laptop CPU.
    wanted = 32768 if device.type == "cuda" else 16384 if device.type == "mps" else 8192
    return min(wanted, config.max_position_embeddings)


class Engine:
    def __init__(
        self,
        model: Qwen3,
        tokenizer: Qwen3Tokenizer,
        template: ChatTemplate,
        cache: KVCache,
        info: EngineInfo,
        checkpoint_sampling: dict | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.template = template
        self.cache = cache
        self.info = info
        self.checkpoint_sampling = checkpoint_sampling or {}
        self._busy = threading.Lock()
        self._warming = False  # a prepare_next_turn holds _busy and gives way to chat()
        self._give_way = threading.Event()
        self.step = make_step(model, cache)  # kept: captured CUDA graphs serve every turn

    @classmethod
    def load(
        cls,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        context_length: int | None = None,
        quantize: str | None = None,
        progress: Callable[[LoadProgress], None] | None = None,
    ) -> Engine:
        torch_device = pick_device(device)
        torch_dtype = pick_dtype(dtype, torch_device)
        if quantize not in (None, "int8", "int4", "fp8"):
            raise EngineError(
                f"unknown quantization '{quantize}'.",
                "Use --quantize int8, int4 or fp8, or leave it out.",
            )
        if quantize == "fp8" and torch_device.type != "cuda":
            # Only CUDA's decode kernels read FP8; elsewhere it would dequantize every step.
            raise EngineError(
                "--quantize fp8 needs a CUDA GPU.", "Use --quantize int8 or int4 here."
            )
        # One CPU thread policy for loading, prefill and decode (engine/threads.py).
        policy = threads.policy_from_env() if torch_device.type == "cpu" else None
        if policy is not None:
            policy.apply()
        path = resolve_model_dir(model, progress)
        config = Qwen3Config.from_dir(path)
        tokenizer = Qwen3Tokenizer.from_dir(path)
        check_tokenizer_fits(config, tokenizer.vocab_size, path)
        template = ChatTemplate.from_dir(path)
        _ = template.thinking_mode  # rendered once now: a hostile template fails before the weights
        context = context_length or default_context(torch_device, config)
        if not 16 <= context <= config.max_position_embeddings:
            raise EngineError(
                f"a context of {context} tokens is outside what this model supports"
                f" (16 to {config.max_position_embeddings}).",
                "Choose another --context.",
            )
        # Refused before the weights are read, with the numbers, rather than failing midway.
        memory_fit.check_fits(
            # fp8 counted as the dtype: an over-estimate by the projections' other half.
            memory_fit.estimate(
                config, dtype_name(torch_dtype), context, None if quantize == "fp8" else quantize
            ),
            memory_fit.available_bytes(str(torch_device)),
            str(torch_device),
            model,
        )

        def report(done: int, total: int) -> None:
            if progress:
                progress(LoadProgress("load", done, total, "loading weights"))

        # On CUDA an FP8 checkpoint stays FP8: the decode kernels convert it in registers.
        keep_fp8 = torch_device.type == "cuda"
        net = load_model(
            path, config, torch_device, torch_dtype, context, report, quantize, keep_fp8
        )
        if quantize == "int8":
            from .quantize import quantize_int8

            quantize_int8(net)
        elif quantize == "int4":
            from .quantize import quantize_int4

            quantize_int4(net)
        elif torch_device.type == "cpu" and torch_dtype == torch.bfloat16:
            from . import cpu_linear

            if cpu_linear.available():
                cpu_linear.pack_linears(net)
        if torch_device.type == "cpu":
            from . import cpu_linear

            cpu_linear.route_with_kernel(net)
        if policy is not None:
            threads.install(net, policy)
        cache = KVCache(config, context, torch_device, torch_dtype)
        info = EngineInfo(
            model=model,
            path=str(path),
            device=str(torch_device),
            dtype=dtype_name(torch_dtype),
            context_length=context,
            num_parameters=config.num_parameters,
            quantize=quantize,
            thinking_mode=template.thinking_mode,
            thinking_mode_note=template.thinking_mode_note,
        )
        return cls(net, tokenizer, template, cache, info, _read_generation_config(path))

    # -- prompts -------------------------------------------------------------------------

    @property
    def thinking_mode(self) -> ThinkingMode:
        return self.template.thinking_mode

    def prompt_ids(self, messages: list[Message], thinking: bool) -> list[int]:
        """The prompt as the model's own template renders it, control strings typed in the
        messages kept as plain text. `thinking` is what the user wants; the model's mode decides
        (a thinking-only template opens the block itself, an instruct-only one never does)."""
        thinking = resolve_thinking(self.thinking_mode, thinking)
        text = self.template.render(
            messages,
            add_generation_prompt=True,
            enable_thinking=thinking,
            escaper=self.tokenizer.content_escaper,
        )
        ids = self.tokenizer.encode_prompt(text)
        if thinking and not prompt_opens_thinking(ids, self.tokenizer):
            ids += self.tokenizer.encode(THINK_OPENING)  # resolved on: the mode is hybrid
        return ids

    def count_tokens(self, messages: list[Message], thinking: bool = True) -> int:
        return len(self.prompt_ids(messages, thinking))

    # -- generation ----------------------------------------------------------------------

    def sampling_for(self, options: ChatOptions) -> SamplingParams:
        """The sampling a turn with `options` will use: mode defaults, checkpoint, then the user."""
        thinking = resolve_thinking(self.thinking_mode, options.thinking)
        return options.sampling.apply(default_sampling(thinking, self.checkpoint_sampling))

    def chat(
        self,
        messages: list[Message],
        options: ChatOptions | None = None,
        cancel: threading.Event | None = None,
        answer_now: threading.Event | None = None,
    ) -> Iterator[Event]:
        """Stream one reply to `messages` (the last is the new user message). Setting
        `answer_now` while the model thinks ends its thinking the budget's way."""
        options = options or ChatOptions()
        validate_options(options)  # before anything runs: one line naming the bad value
        if not messages:
            raise EngineError("there is no message to answer.", "Send a message first.")
        if not self._acquire_for_reply():
            raise EngineError("the engine is already generating.", "Wait for it or cancel it.")
        try:
            kept, dropped = fit_messages(
                messages,
                lambda m: self.count_tokens(m, options.thinking),
                self._prompt_limit(options.max_new_tokens),
            )
            if dropped:
                yield ContextNotice(
                    dropped,
                    f"Dropped the {dropped} oldest message{'s' if dropped > 1 else ''}"
                    " so the conversation fits the context window.",
                )
            prompt = self.prompt_ids(kept, options.thinking)
            thinking = prompt_opens_thinking(prompt, self.tokenizer)
            request = Request(
                prompt_ids=prompt,
                opens_thinking=thinking,
                thinking_budget=options.thinking_budget if thinking else None,
                max_new_tokens=options.max_new_tokens,
                sampling=self.sampling_for(options),
            )
            yield from generate(
                self.model,
                self.cache,
                self.tokenizer,
                request,
                cancel,
                step=self.step,
                answer_now=answer_now,
            )
        finally:
            self._busy.release()

    def _prompt_limit(self, max_new_tokens: int) -> int:
        ctx = self.cache.max_tokens
        return ctx - min(max_new_tokens, 1024, ctx // 4)  # room for the reply

    def stop_warming(self) -> None:
        """Make a running prepare_next_turn stop at its next chunk (e.g. the app quits)."""
        if self._warming:
            self._give_way.set()

    def _acquire_for_reply(self) -> bool:
        if self._busy.acquire(blocking=False):
            return True
        if self._warming:
            # Warming stops at its next chunk; what it prefilled is the new prompt's start.
            self._give_way.set()
            return self._busy.acquire(timeout=WARM_GIVE_WAY_TIMEOUT_S)
        return self._busy.acquire(blocking=False)  # a warm-up may have ended just now

    def prepare_next_turn(
        self, messages: list[Message], cancel: threading.Event | None = None
    ) -> int:
        """Prefill, while the user reads and types, what the next prompt will start with.

        The template renders an earlier reply differently from how it was generated (its
        reasoning is dropped), so without this the next turn would prefill the whole last
        reply before its first token. `messages` end with that reply. Gives way at once to
        chat(); returns how many tokens it prefilled.
        """
        if not self._busy.acquire(blocking=False):
            return 0  # a reply is running: it owns the cache
        self._warming = True
        self._give_way.clear()
        try:
            ids = self._next_prompt_start(messages)
            limit = self._prompt_limit(ChatOptions().max_new_tokens)
            if not ids or len(ids) + WARM_HEADROOM > limit:
                return 0  # the next turn will drop old messages: this prefix won't be its start
            self.cache.truncate(self.cache.matching_prefix(ids))
            todo = ids[self.cache.length :]

            def stop() -> bool:
                return self._give_way.is_set() or (cancel is not None and cancel.is_set())

            with torch.inference_mode():
                prefill(self.model, self.cache, todo, stop, self.step)
                if not stop():
                    # The next reply's first steps replay graphs captured now, not then.
                    length = self.cache.length
                    self.step.prepare(length, length + WARM_HEADROOM)
            return self.cache.length - (len(ids) - len(todo))
        finally:
            self._warming = False
            self._busy.release()

    def _next_prompt_start(self, messages: list[Message]) -> list[int]:
        # Every next prompt is these messages plus one user message: the tokens two
        # different user messages share are the part that is known now.
        a = self.prompt_ids([*messages, {"role": "user", "content": "a"}], thinking=False)
        b = self.prompt_ids([*messages, {"role": "user", "content": "b"}], thinking=False)
        return a[: common_prefix_length(a, b)]

    def reset_cache(self) -> None:
        self.cache.truncate(0)


def _read_generation_config(path: Path) -> dict:
    try:
        data = json.loads((Path(path) / "generation_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # optional file: Qwen's defaults apply
    return data if isinstance(data, dict) else {}
