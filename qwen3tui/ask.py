"""`qwen3tui ask`: answer one prompt from the command line (scripts, tests and benchmarks).

The answer streams to stdout, the thinking to stderr (dim on a terminal); `--json` prints one
object at the end instead. Each exchange is recorded in the session store unless --no-save.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from dataclasses import asdict
from typing import Any

from qwen3tui.engine import (
    AnswerDelta,
    ChatOptions,
    ContextNotice,
    EngineError,
    LoadProgress,
    SamplingOverrides,
    Summary,
    ThinkingDelta,
    ThinkingDone,
)

DIM, RESET = "\x1b[2m", "\x1b[0m"


def add_parser(sub: argparse._SubParsersAction) -> None:
    from qwen3tui.cli import add_model_arguments

    p = sub.add_parser(
        "ask",
        help="answer one prompt and exit",
        description="Answer one prompt (from the argument or stdin) and exit.",
    )
    p.add_argument("prompt", nargs="?", help="the message (read from stdin when omitted)")
    add_model_arguments(p, subcommand=True)
    p.add_argument(
        "--think",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="thinking mode (default: on)",
    )
    p.add_argument(
        "--budget",
        type=_budget,
        default=None,
        metavar="N",
        help="thinking budget in tokens, or 'off' (default: unlimited)",
    )
    p.add_argument("--max-new-tokens", type=_positive_int, default=32768, metavar="N")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--min-p", type=float, default=None)
    p.add_argument("--presence-penalty", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--system", default=None, metavar="TEXT", help="system prompt")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--continue",
        dest="continue_last",
        action="store_true",
        help="add to the most recent session",
    )
    where.add_argument("--session", default=None, metavar="ID", help="add to this session")
    where.add_argument("--no-save", action="store_true", help="record nothing")


def _budget(value: str) -> int | None:
    if value.lower() in ("off", "none", "unlimited"):
        return None
    return _non_negative_int(value)


def _positive_int(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return n


def _non_negative_int(value: str) -> int:
    n = int(value)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return n


def run(args: argparse.Namespace) -> int:
    from qwen3tui.cli import UserError

    prompt = args.prompt
    if prompt is None:
        if sys.stdin.isatty():
            raise UserError("no prompt given. Pass it as an argument or pipe it on stdin.")
        prompt = sys.stdin.read()
    if not prompt.strip():
        raise UserError("the prompt is empty.")

    recorder_factory = _Recording(args) if not args.no_save else None
    history = recorder_factory.history() if recorder_factory else []
    system = (
        args.system
        if args.system is not None
        else (recorder_factory.system_prompt() if recorder_factory else None)
    )

    try:
        from qwen3tui.engine import load_engine

        engine = load_engine(
            args.model,
            device=args.device,
            dtype=args.dtype,
            context_length=args.context,
            quantize=args.quantize,
            progress=_progress_printer(),
        )
    except EngineError as err:
        raise UserError(str(err)) from None

    options = ChatOptions(
        thinking=args.think,
        thinking_budget=args.budget,
        max_new_tokens=args.max_new_tokens,
        sampling=SamplingOverrides(
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=args.top_k,
            min_p=args.min_p,
            presence_penalty=args.presence_penalty,
            seed=args.seed,
        ),
    )
    messages = ([{"role": "system", "content": system}] if system else []) + history
    messages.append({"role": "user", "content": prompt})

    recorder = None
    if recorder_factory:
        recorder = recorder_factory.start(
            engine.info.model, system, prompt, options, asdict(engine.sampling_for(options))
        )

    cancel = threading.Event()
    summary = _stream(engine, messages, options, cancel, recorder, as_json=args.json)
    if recorder is not None and recorder.warning:
        print(f"qwen3tui: warning: {recorder.warning}", file=sys.stderr)
    if args.json:
        out = _summary_json(summary)
        out["session_id"] = recorder_factory.session_id if recorder_factory else None
        print(json.dumps(out, ensure_ascii=False))
    return 130 if summary.finish_reason == "cancelled" else 0


def _stream(engine, messages, options, cancel, recorder, *, as_json: bool) -> Summary:
    dim = sys.stderr.isatty()
    # First Ctrl+C stops generation and keeps the partial reply; a second one exits at once.
    previous = signal.getsignal(signal.SIGINT)

    def on_interrupt(signum, frame):
        if cancel.is_set():
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        cancel.set()

    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        signal.signal(signal.SIGINT, on_interrupt)
    summary = None
    try:
        for event in engine.chat(messages, options, cancel):
            if recorder is not None:
                recorder.on_event(event)
            if isinstance(event, Summary):
                summary = event
            elif as_json:
                continue
            elif isinstance(event, ThinkingDelta):
                sys.stderr.write(f"{DIM}{event.text}{RESET}" if dim else event.text)
                sys.stderr.flush()
            elif isinstance(event, ThinkingDone):
                sys.stderr.write("\n")
                sys.stderr.flush()
            elif isinstance(event, AnswerDelta):
                sys.stdout.write(event.text)
                sys.stdout.flush()
            elif isinstance(event, ContextNotice):
                print(f"qwen3tui: {event.message}", file=sys.stderr)
    except EngineError as err:
        if recorder is not None:
            recorder.fail(str(err))
        from qwen3tui.cli import UserError

        raise UserError(str(err)) from None
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)
    if not as_json:
        sys.stdout.write("\n")
        if summary.finish_reason == "cancelled":
            print("qwen3tui: stopped; the partial reply was kept.", file=sys.stderr)
    return summary


def _summary_json(s: Summary) -> dict[str, Any]:
    return {
        "thinking": s.thinking,
        "answer": s.answer,
        "finish_reason": s.finish_reason,
        "thinking_enabled": s.thinking_enabled,
        "thinking_budget": s.thinking_budget,
        "thinking_budget_hit": s.thinking_budget_hit,
        "usage": asdict(s.usage),
        "timings": asdict(s.timings),
        "token_ids": s.token_ids,
        "prefilled_tokens": s.prefilled_tokens,
    }


def _progress_printer():
    if not sys.stderr.isatty():
        return None
    last = {"pct": -1}

    def show(p: LoadProgress) -> None:
        pct = int(100 * p.done / p.total) if p.total else 0
        if pct != last["pct"]:
            last["pct"] = pct
            end = "\n" if p.total and p.done >= p.total else ""
            sys.stderr.write(f"\r{DIM}{p.description or p.stage}: {pct}%{RESET}{end}")
            sys.stderr.flush()

    return show


class _Recording:
    """Where this exchange is recorded: a new session, the latest one, or a given one."""

    def __init__(self, args: argparse.Namespace) -> None:
        from qwen3tui.cli import UserError
        from qwen3tui.store import SessionStore, StoreError

        try:
            self.store = SessionStore.open()
        except StoreError as err:
            raise UserError(str(err)) from None
        for warning in self.store.warnings:
            print(f"qwen3tui: warning: {warning}", file=sys.stderr)
        self.session_id: str | None = None
        try:
            if args.continue_last:
                self.session_id = self.store.most_recent_id()
                if self.session_id is None:
                    raise UserError(
                        "there is no session to continue. Run `qwen3tui ask` without --continue."
                    )
            elif args.session:
                self.session_id = self.store.resolve_id(args.session)
        except StoreError as err:
            raise UserError(str(err)) from None

    def history(self) -> list[dict[str, str]]:
        if self.session_id is None:
            return []
        return [m for m in self.store.conversation(self.session_id) if m["role"] != "system"]

    def system_prompt(self) -> str | None:
        if self.session_id is None:
            return None
        return self.store.get_session(self.session_id).system_prompt

    def start(
        self,
        model: str,
        system: str | None,
        prompt: str,
        options: ChatOptions,
        sampling: dict[str, Any],
    ):
        from qwen3tui.recording import ReplyRecorder

        if self.session_id is None:
            settings = {
                "thinking": options.thinking,
                "thinking_budget": options.thinking_budget,
                "sampling": sampling,
                "max_new_tokens": options.max_new_tokens,
            }
            self.session_id = self.store.create_session(model, system, settings).id
        self.store.add_user_message(self.session_id, prompt)
        return ReplyRecorder(
            self.store,
            self.session_id,
            thinking_enabled=options.thinking,
            budget=options.thinking_budget,
            sampling=sampling,
        )
