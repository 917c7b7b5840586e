"""RemoteEngine: the ChatEngine protocol over an OpenAI-compatible server (vLLM, SGLang,
TensorRT-LLM, llama.cpp, transformers serve) or Ollama's native API.

It yields the local engine's events: thinking and answer split as the local engine splits them,
the thinking switch sent as `chat_template_kwargs.enable_thinking` (Ollama: `think`), and the
thinking budget enforced as the local engine enforces it (see client_budget.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import replace
from functools import cached_property
from urllib.parse import urlsplit

from qwen3tui.engine.chat_template import ChatTemplate
from qwen3tui.engine.context import fit_messages
from qwen3tui.engine.errors import EngineError
from qwen3tui.engine.events import ContextNotice, Event, Summary, Timings, Usage
from qwen3tui.engine.info import EngineInfo
from qwen3tui.engine.options import (
    ChatOptions,
    SamplingParams,
    default_sampling,
    validate_options,
)
from qwen3tui.engine.thinking_mode import ThinkingMode, resolve_thinking

from .client_budget import CompletionTarget, budget_prompt, budgeted_reply
from .errors import RequestCancelledError, RequestRejectedError
from .http_client import (
    DEFAULT_RETRY,
    DEFAULT_TIMEOUTS,
    ApiKey,
    RetryPolicy,
    ServerClient,
    Timeouts,
    host_of,
)
from .local_prompt import LocalPrompt, load_local_prompt
from .pieces import Piece
from .reply_split import ReplySplitter
from .server_info import ServedModel, ServerInfo, discover, model_not_found
from .streamed_request import (
    OPTIONAL_FIELDS,
    Request,
    Stats,
    ollama_options,
    openai_sampling,
    stream_pieces,
)

Message = dict[str, str]
_DEFAULT_MAX_NEW_TOKENS = ChatOptions().max_new_tokens
_CHARS_PER_TOKEN = 4  # a rough Qwen3 average, for counts when no tokenizer is at hand


class RemoteEngine:
    def __init__(
        self,
        client: ServerClient,
        server: ServerInfo,
        model: ServedModel,
        *,
        tokenizer_dir: str | None = None,
        fetch_tokenizer: bool = True,
    ) -> None:
        self.client = client
        self.server = server
        self.model = model
        self._tokenizer_dir = tokenizer_dir
        self._fetch_tokenizer = fetch_tokenizer
        self._local: LocalPrompt | None = None
        self._refused: set[str] = set()  # optional fields this server refused once
        self._busy = threading.Lock()
        self._info = EngineInfo(
            model=model.id,
            path=client.display,
            device=f"{server.kind} @ {host_of(client.base_url)}",
            dtype="",
            context_length=model.context_length,
            num_parameters=0,
            server=client.display,
        )

    def __repr__(self) -> str:
        return f"RemoteEngine({self.model.id!r} at {self.client.display!r})"

    @property
    def info(self) -> EngineInfo:
        return self._info

    # -- prompts -----------------------------------------------------------------------------

    def local_prompt(self) -> LocalPrompt:
        """The model's chat template (and tokenizer) here, loaded on first use."""
        if self._local is None:
            candidates = [self.model.id, self.model.root]
            local = load_local_prompt(self._tokenizer_dir, candidates, self._fetch_tokenizer)
            if local.template.is_builtin and self.server.kind == "llama.cpp":
                local = self._llama_cpp_template() or local
            self._local = local
            self._info = replace(
                self._info,
                thinking_mode=self.thinking_mode,
                thinking_mode_note=self._mode_and_note[1],
            )
        return self._local

    @property
    def thinking_mode(self) -> ThinkingMode:
        """From the model's own template where it is at hand; else Qwen3's hybrid thinking."""
        return self._mode_and_note[0]

    @cached_property
    def _mode_and_note(self) -> tuple[ThinkingMode, str | None]:
        template = self.local_prompt().template
        try:
            return template.thinking_mode, template.thinking_mode_note
        except EngineError as err:  # a template the local renderer refuses: the server renders
            return "hybrid", f"Cannot tell the thinking mode from {template.source}: {err.problem}"

    def _llama_cpp_template(self) -> LocalPrompt | None:
        """llama.cpp serves the GGUF's own chat template at /props: the model's own, where no
        tokenizer files are at hand (a GGUF model's name is no Hugging Face id)."""
        try:
            props = self.client.get_json(self.client.root_url("/props"))
            text = props.get("chat_template") if isinstance(props, dict) else None
            if not isinstance(text, str) or not text.strip():
                return None
            special = {
                k: props[k] for k in ("bos_token", "eos_token") if isinstance(props.get(k), str)
            }
            source = f"{self.client.display.removesuffix('/v1')}/props"
            return LocalPrompt(
                ChatTemplate(text, source=source, special_tokens=special), None, source
            )
        except EngineError:
            return None  # unreachable, or a template our Jinja cannot compile: the built-in one

    def count_tokens(self, messages: list[Message], thinking: bool = True) -> int:
        """Exact with the model's tokenizer at hand; an estimate otherwise (never a request)."""
        local = self._local
        if local is not None and local.tokenizer is not None:
            thinking = resolve_thinking(self.thinking_mode, thinking)
            text = local.template.render(
                messages, add_generation_prompt=True, enable_thinking=thinking
            )
            return len(local.tokenizer.encode(budget_prompt(text) if thinking else text))
        chars = sum(len(m.get("content", "")) for m in messages)
        return chars // _CHARS_PER_TOKEN + 5 * len(messages) + 3

    def sampling_for(self, options: ChatOptions) -> SamplingParams:
        """Qwen's per-mode guidance with the user's choices on top (the server's checkpoint
        defaults are not known here)."""
        thinking = resolve_thinking(self.thinking_mode, options.thinking)
        return options.sampling.apply(default_sampling(thinking, {}))

    # -- generation --------------------------------------------------------------------------

    def chat(
        self,
        messages: list[Message],
        options: ChatOptions | None = None,
        cancel: threading.Event | None = None,
        answer_now: threading.Event | None = None,
    ) -> Iterator[Event]:
        """Stream one reply to `messages` (the last is the new user message).

        `answer_now` ends the thinking on the client-side budget path (a thinking turn with a
        budget: the default); with an unlimited budget the reply is one request to the server,
        which cannot be told to stop thinking, so there it is not honoured.
        """
        options = options or ChatOptions()
        validate_options(options)  # before any request: one line naming the bad value
        # The model's mode decides: a thinking-only model always thinks, an instruct one never.
        options = replace(options, thinking=resolve_thinking(self.thinking_mode, options.thinking))
        cancel = cancel or threading.Event()
        if not messages:
            raise EngineError("there is no message to answer.", "Send a message first.")
        if not self._busy.acquire(blocking=False):
            raise EngineError("the engine is already generating.", "Wait for it or cancel it.")
        started = time.perf_counter()
        try:
            messages = yield from self._fit(messages, options)
            if options.thinking and options.thinking_budget is not None:
                yield from self._budgeted(
                    messages, options, options.thinking_budget, cancel, answer_now
                )
            else:
                yield from self._streamed(messages, options, cancel)
        except RequestCancelledError:
            yield _cancelled(options, started)
        finally:
            self._busy.release()

    def _fit(self, messages: list[Message], options: ChatOptions) -> Generator[Event, None, list]:
        """Drop the oldest turns when the prompt would not fit the server's context, as the
        local engine does; only where that can be counted (the model's tokenizer at hand and
        the server's context known), else the server's own check stands."""
        context = self._info.context_length
        local = self._local
        if not context or local is None or local.tokenizer is None:
            return messages
        limit = context - min(options.max_new_tokens, 1024, context // 4)  # room for the reply
        kept, dropped = fit_messages(
            messages, lambda m: self.count_tokens(m, options.thinking), limit
        )
        if dropped:
            yield ContextNotice(
                dropped,
                f"Dropped the {dropped} oldest message{'s' if dropped > 1 else ''}"
                " so the conversation fits the context window.",
            )
        return kept

    def prepare_next_turn(
        self, messages: list[Message], cancel: threading.Event | None = None
    ) -> int:
        return 0  # the server keeps its own prefix cache

    def stop_warming(self) -> None:
        pass

    def close(self) -> None:
        self.client.close()

    # -- one plain streamed reply ------------------------------------------------------------

    def _chat_request(self, messages: list[Message], options: ChatOptions) -> Request:
        sampling = self.sampling_for(options)
        plain = [{"role": m["role"], "content": m["content"]} for m in messages]
        limit = (
            options.max_new_tokens if options.max_new_tokens != _DEFAULT_MAX_NEW_TOKENS else None
        )
        if self.server.kind == "ollama":
            body = {
                "model": self.model.id,
                "messages": plain,
                "stream": True,
                "think": options.thinking,
                "options": ollama_options(sampling, limit),
            }
            return Request(self.client.root_url("/api/chat"), body, ndjson=True)
        body = {
            "model": self.model.id,
            "messages": plain,
            "stream": True,
            "stream_options": {"include_usage": True},
            "chat_template_kwargs": {"enable_thinking": options.thinking},
            **openai_sampling(sampling),
        }
        if limit is not None:
            body["max_tokens"] = limit  # else the server's own limit: the context that is left
        return Request(self.client.api_url("/chat/completions"), body)

    def _streamed(
        self, messages: list[Message], options: ChatOptions, cancel: threading.Event
    ) -> Iterator[Event]:
        started = time.perf_counter()
        split = ReplySplitter(expect_thinking=options.thinking, started=started)
        stats = Stats(started)
        for piece in self._send(self._chat_request(messages, options), cancel):
            stats.see(piece)
            yield from split.feed(piece.reasoning, piece.content)
        yield from split.finish()
        thinking_tokens, answer_tokens = _token_split(stats, split)
        prompt_tokens = stats.prompt_tokens
        if prompt_tokens is None:
            prompt_tokens = self.count_tokens(messages, options.thinking)
        ttft = (stats.first_at - started) if stats.first_at else 0.0
        decode_s = (stats.last_at - stats.first_at) if stats.first_at and stats.last_at else 0.0
        sampled = thinking_tokens + answer_tokens
        yield Summary(
            finish_reason=stats.finish_reason or "cancelled",  # type: ignore[arg-type]
            thinking=split.thinking,
            answer=split.answer,
            thinking_enabled=options.thinking,
            thinking_budget=None,
            thinking_budget_hit=False,
            usage=Usage(prompt_tokens, thinking_tokens, answer_tokens),
            timings=Timings(
                ttft_s=ttft,
                prefill_tok_s=stats.prompt_tok_s or (prompt_tokens / ttft if ttft > 0 else 0.0),
                decode_tok_s=stats.decode_tok_s
                or ((sampled - 1) / decode_s if decode_s > 0 and sampled > 1 else 0.0),
                thinking_s=split.thinking_seconds,
                total_s=time.perf_counter() - started,
            ),
        )

    # -- the thinking budget -----------------------------------------------------------------

    def _budgeted(
        self,
        messages: list[Message],
        options: ChatOptions,
        budget: int,
        cancel: threading.Event,
        answer_now: threading.Event | None = None,
    ) -> Iterator[Event]:
        local = self.local_prompt()
        rendered = local.template.render(messages, add_generation_prompt=True, enable_thinking=True)
        # A template that opens the block itself (thinking-only models) is not opened twice.
        if self.server.kind == "ollama":
            target = CompletionTarget(self.client.root_url("/api/generate"), self.model.id, True)
        else:
            target = CompletionTarget(self.client.api_url("/completions"), self.model.id)
        yield from budgeted_reply(
            self._send,
            target,
            budget_prompt(rendered),
            options,
            budget,
            self.sampling_for(options),
            cancel,
            lambda: self.count_tokens(messages, True),
            explicit_limit=options.max_new_tokens != _DEFAULT_MAX_NEW_TOKENS,
            answer_now=answer_now,
        )

    # -- sending -----------------------------------------------------------------------------

    def _send(self, request: Request, cancel: threading.Event) -> Iterator[Piece]:
        """Stream `request`; a field the server refuses is dropped and the request sent again
        (remembered for later requests); a 404 names the models the server does serve."""
        for name in self._refused:
            request = request.without(name)
        while True:
            try:
                yield from stream_pieces(self.client, request, cancel)
                return
            except RequestRejectedError as err:
                status = getattr(err, "status", None)
                said = str(getattr(err, "server_said", "")).lower()
                refused = [
                    name
                    for name in OPTIONAL_FIELDS
                    if name not in self._refused and _mentions(said, name, request)
                ]
                if status in (400, 422) and refused:
                    self._refused.update(refused)
                    for name in refused:
                        request = request.without(name)
                    continue
                if status == 404:
                    raise self._not_found(request, cancel) from None
                raise

    def _not_found(self, request: Request, cancel: threading.Event) -> EngineError:
        try:
            served = discover(self.client, cancel).model_ids
        except EngineError:
            served = []
        if self.model.id not in served:
            return model_not_found(self.model.id, served)
        path = urlsplit(request.url).path
        if request.url.endswith(("/completions", "/api/generate")) and "chat" not in path:
            return RequestRejectedError(
                f"the server at {self.client.display} has no {path} endpoint, which the"
                " thinking budget needs.",
                "Turn the budget off (/budget off), or use a server that has it.",
            )
        return RequestRejectedError(
            f"the server at {self.client.display} has no {path} endpoint.", "Check --server."
        )


def _token_split(stats: Stats, split: ReplySplitter) -> tuple[int, int]:
    """Thinking and answer tokens: the server's numbers where it gives them, else its total
    split by the chunks streamed (about one token each)."""
    total = stats.completion_tokens
    if stats.reasoning_tokens is not None:
        thinking = stats.reasoning_tokens
    elif total is not None and not split.answer:
        thinking = total if split.thinking else 0
    else:
        thinking = split.thinking_pieces if split.thinking else 0
    if total is None:
        return thinking, split.answer_pieces
    return thinking, max(total - thinking, 0) if split.answer else 0


def _mentions(said: str, name: str, request: Request) -> bool:
    in_body = name in request.body or name in (request.body.get("options") or {})
    return in_body and name in said


def _cancelled(options: ChatOptions, started: float) -> Summary:
    return Summary(
        finish_reason="cancelled",
        thinking="",
        answer="",
        thinking_enabled=options.thinking,
        thinking_budget=options.thinking_budget if options.thinking else None,
        thinking_budget_hit=False,
        usage=Usage(),
        timings=Timings(total_s=time.perf_counter() - started),
    )


def connect_remote(
    base_url: str,
    model: str | None = None,
    api_key_env: str | None = None,
    *,
    tokenizer_dir: str | None = None,
    fetch_tokenizer: bool = True,
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
    retry: RetryPolicy = DEFAULT_RETRY,
    transport: object | None = None,
) -> RemoteEngine:
    """Connect to the server at `base_url` (e.g. http://gpu-box:8000/v1) and pick `model`
    (None: the first one it lists). Raises a one-line EngineError when that cannot be done.

    The API key comes from `api_key_env`, else QWEN3TUI_API_KEY, else OPENAI_API_KEY.
    `tokenizer_dir` names a folder with the model's tokenizer files, which the thinking budget
    renders prompts with; without it they are looked up by the served model's name in the
    Hugging Face cache (and downloaded, without weights, when `fetch_tokenizer`).
    """
    client = ServerClient(
        base_url,
        ApiKey.from_env(api_key_env),
        timeouts=timeouts,
        retry=retry,
        transport=transport,  # type: ignore[arg-type]
    )
    try:
        server = discover(client)
        chosen = server.find(model)
        engine = RemoteEngine(
            client, server, chosen, tokenizer_dir=tokenizer_dir, fetch_tokenizer=fetch_tokenizer
        )
        engine.local_prompt()  # now, while the app shows "loading", not at the first budget
    except BaseException:
        client.close()
        raise
    return engine
