"""`qwen3tui ask`: answer one prompt from the command line (scripts, tests and benchmarks).

The answer streams to stdout, the thinking to stderr (dim on a terminal); `--json` prints one
object at the end instead. The turn runs through the same `run_turn` as the TUI, and is saved
in the session store unless --no-save: the prompt before the model loads, the reply as it
streams. Exit codes: 0 done, 2 bad input or a model error, 3 answered but not saved, 130 Ctrl+C,
143 SIGTERM, 129 SIGHUP.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from typing import Any

from qwen3tui import engine_choice
from qwen3tui.cli_options import (
    EXIT_CANCELLED,
    EXIT_NOT_SAVED,
    EXIT_OK,
    UserError,
    add_model_arguments,
)
from qwen3tui.closed_pipe import exit_code_for_closed_pipe
from qwen3tui.engine import (
    AnswerDelta,
    ChatOptions,
    ContextNotice,
    EngineError,
    LoadProgress,
    SamplingOverrides,
    ThinkingDelta,
    ThinkingDone,
    resolve_thinking,
    thinking_switch_note,
)
from qwen3tui.file_attach import (
    AttachError,
    attachment_from_bytes,
    check_fits,
    read_attachment,
    stdin_is_piped,
)
from qwen3tui.settings import BY_KEY, SAMPLING_KEYS, SettingError, TurnSettings
from qwen3tui.store import Attachment, Outcome, expand_prompt
from qwen3tui.terminal_text import neutralize
from qwen3tui.turn import Recording, Stop, TurnEnded, WaitingForSession, run_turn

DIM, RESET = "\x1b[2m", "\x1b[0m"
SIGNAL_EXIT = {signal.SIGTERM: 143, signal.SIGHUP: 129}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ask",
        help="answer one prompt and exit",
        description="Answer one prompt (from the argument or stdin) and exit.",
    )
    p.add_argument(
        "prompt",
        nargs="?",
        help="the message (read from stdin when omitted; when given, piped stdin is attached"
        " to it as a file)",
    )
    p.add_argument(
        "-f",
        "--file",
        dest="files",
        action="append",
        default=[],
        metavar="FILE",
        help="attach a text file to the message (repeatable)",
    )
    add_model_arguments(p, subcommand=True)
    p.add_argument(
        "--think",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="thinking mode (default: on, where the model has a choice)",
    )
    p.add_argument(
        "--budget",
        type=_setting_arg("thinking_budget"),
        default=None,
        metavar="N",
        help="thinking budget in tokens, or 'off' (default: unlimited)",
    )
    p.add_argument(
        "--max-new-tokens",
        "--max-tokens",
        dest="max_tokens",
        type=_setting_arg("max_tokens"),
        default=BY_KEY["max_tokens"].default,
        metavar="N",
        help=f"most tokens in the reply (default: {BY_KEY['max_tokens'].default})",
    )
    for key in SAMPLING_KEYS:
        p.add_argument(
            f"--{key.replace('_', '-')}",
            dest=key,
            type=_setting_arg(key),
            default=None,
            help=f"{BY_KEY[key].help} (default: the model's, per mode)",
        )
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


def _setting_arg(key: str) -> Callable[[str], Any]:
    """An argparse type from the settings schema: the same parsing and ranges as `/set`."""

    def parse(text: str) -> Any:
        try:
            return BY_KEY[key].parse(text)
        except SettingError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = key  # argparse names the type in its messages
    return parse


def run(args: argparse.Namespace) -> int:
    prompt = _read_prompt(args.prompt)
    files = _attachments(args)  # refused before anything is saved or loaded
    settings = TurnSettings(
        thinking=args.think is not False,
        thinking_budget=args.budget,
        max_tokens=args.max_tokens,
        sampling=SamplingOverrides(**{key: getattr(args, key) for key in SAMPLING_KEYS}),
    )
    out = _Output(as_json=args.json)
    with _recording(args, settings, prompt, out, files) as place:
        system = args.system if args.system is not None else place.system_prompt
        messages = ([{"role": "system", "content": system}] if system else []) + place.history
        messages.append({"role": "user", "content": expand_prompt(prompt, files)})
        engine = _load(args, place)
        options = _options_for(engine, settings, args.think, out)
        _check_fits(engine, prompt, files, options, system)
        stop = Stop()
        out.thinking = options.thinking  # until the model closes its think block
        with _stop_on_signals(stop, lambda: out.thinking) as caught:
            ended = out.stream(run_turn(engine, messages, options, stop, place.recording(engine)))
        saved = place.finish()
    if args.json:
        result = _summary_json(ended, options)
        result["session_id"] = place.session_id
        result["saved"] = saved
        out.json(result)
    if ended.error:
        raise UserError(ended.error)
    if out.closed:
        return exit_code_for_closed_pipe()
    if caught:
        return SIGNAL_EXIT.get(caught[0], EXIT_CANCELLED)
    if not saved:
        return EXIT_NOT_SAVED
    return EXIT_CANCELLED if ended.outcome is Outcome.CANCELLED else EXIT_OK


def _options_for(engine: Any, settings: TurnSettings, asked: bool | None, out: _Output) -> Any:
    """The turn's options as the model allows them: a thinking-only model always thinks (the
    budget still holds), an instruct-only one never does; an explicit flag it cannot follow
    is said in one line."""
    mode = engine.info.thinking_mode
    if engine.info.thinking_mode_note:
        out.note(engine.info.thinking_mode_note)
    if asked is not None:
        note = thinking_switch_note(mode, asked)
        if note:
            out.note(note)
    return replace(settings, thinking=resolve_thinking(mode, settings.thinking)).options()


def _read_prompt(prompt: str | None) -> str:
    if prompt is None:
        if sys.stdin is None or sys.stdin.isatty():
            raise UserError("no prompt given. Pass it as an argument or pipe it on stdin.")
        raw = sys.stdin.buffer.read()
        try:
            prompt = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise UserError(
                f"stdin is not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start});"
                " convert it first, e.g. with iconv."
            ) from None
    if not prompt.strip():
        raise UserError("the prompt is empty.")
    return prompt


def _attachments(args: argparse.Namespace) -> list[Attachment]:
    """The files of `-f`, then piped stdin when the prompt is an argument (`cat f | ask q`)."""
    try:
        files = [read_attachment(path) for path in args.files]
        if args.prompt is not None and stdin_is_piped(sys.stdin):
            raw = sys.stdin.buffer.read()
            if raw:
                files.append(attachment_from_bytes(raw, "stdin"))
    except AttachError as err:
        raise UserError(str(err)) from None
    return files


def _check_fits(
    engine: Any, prompt: str, files: list[Attachment], options: Any, system: str | None
) -> None:
    try:
        check_fits(
            prompt,
            files,
            lambda m: engine.count_tokens(m, options.thinking),
            engine.info.context_length,
            options.max_new_tokens,
            system,
        )
    except AttachError as err:
        raise UserError(str(err)) from None


def _load(args: argparse.Namespace, place: _Place) -> Any:
    try:
        engine = engine_choice.open_engine(args, _progress_printer())
    except EngineError as err:
        if place.started_on:
            raise UserError(f"{err} (this session was started on {place.started_on})") from None
        raise UserError(str(err)) from None
    if place.saver is not None and place.session_id is not None:
        session_id, where = place.session_id, engine_choice.where(engine)
        if where:  # `--continue` goes back to this server
            place.saver.call("where it runs", lambda s: s.update_settings(session_id, where))
    return engine


class _Place:
    """Where this exchange is recorded: nowhere, a new session, the latest, or a given one."""

    def __init__(self) -> None:
        self.saver: Any = None
        self.session_id: str | None = None
        self.lock: Any = None
        self.history: list[dict[str, str]] = []
        self.system_prompt: str | None = None
        self.started_on: str | None = None  # the server a continued session was started on

    def recording(self, engine: Any) -> Recording | None:
        if self.saver is None or self.session_id is None:
            return None
        return Recording(
            self.saver, self.session_id, model=engine_choice.reply_model(engine), lock=self.lock
        )

    def finish(self) -> bool:
        """Wait until everything is on disk (a locked store is waited for); True if it is."""
        if self.saver is None:
            return True
        saved = self.saver.close()
        if not saved:
            reason = self.saver.state.unavailable or "the session store could not be written"
            print(
                f"qwen3tui: not saved: {reason} (the answer above is all there is)",
                file=sys.stderr,
            )
        return saved


@contextmanager
def _recording(
    args: argparse.Namespace,
    settings: TurnSettings,
    prompt: str,
    out: _Output,
    files: list[Attachment] | None = None,
) -> Iterator[_Place]:
    """Take the session, save the prompt (before the model loads), and release it at the end."""
    place = _Place()
    if args.no_save:
        engine_choice.choose(args)
        yield place
        return
    from qwen3tui.store import SessionSaver, SessionStore, StoreError

    try:
        store = SessionStore.open()
    except StoreError as err:
        raise UserError(str(err)) from None
    for warning in store.warnings:
        out.note(f"warning: {warning}")
    told: list[bool] = []

    def on_change(state: Any) -> None:
        if state.waiting_for_lock and not told:
            told.append(True)
            out.note("waiting for the session store (another program is writing to it)…")

    place.saver = SessionSaver(store, on_change=on_change)
    try:
        try:
            if args.continue_last:
                place.session_id = store.most_recent_id()
                if place.session_id is None:
                    raise UserError(
                        "there is no session to continue. Run `qwen3tui ask` without --continue."
                    )
            elif args.session:
                place.session_id = store.resolve_id(args.session)
        except StoreError as err:
            raise UserError(str(err)) from None
        if place.session_id is not None:
            place.lock = store.session_lock(place.session_id)
            if not place.lock.try_acquire():
                out.note("waiting for the reply another qwen3tui is writing in this session…")
                place.lock.acquire()
            session = store.get_session(place.session_id)
            engine_choice.choose(args, session.settings)
            place.started_on = session.settings.get("server") if args.server else None
            place.system_prompt = session.system_prompt
            place.history = [m for m in store.conversation(session.id) if m["role"] != "system"]
        else:
            engine_choice.choose(args)
            place.session_id = place.saver.create_session(
                args.model or args.server, args.system, settings.to_dict()
            )
        place.saver.add_user_message(place.session_id, prompt, files or ())
        place.saver.wait_idle()  # the prompt is on disk before the model loads (or said not)
        yield place
    finally:
        if place.lock is not None:
            place.saver.wait_idle()  # this turn is on disk before another may start
            place.lock.release()
        place.saver.close(timeout=0)
        store.close()


@contextmanager
def _stop_on_signals(stop: Stop, thinking: Callable[[], bool]) -> Iterator[list[int]]:
    """Ctrl+C while the model thinks ends the thinking (it answers now); otherwise, or the next
    time, it stops the reply (one more exits at once). SIGTERM and SIGHUP end it as
    interrupted. Either way what was generated is saved and marked before exiting."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, *SIGNAL_EXIT)}

    def on_signal(signum: int, frame: object) -> None:
        if signum == signal.SIGINT:
            if stop.is_set():
                signal.signal(signal.SIGINT, previous[signal.SIGINT])
                raise KeyboardInterrupt
            if thinking() and not stop.answer_event.is_set():
                stop.answer_now()  # the reply goes on: not a stop, so not `caught`
                return
            stop.cancel()
        else:
            stop.interrupt()
        caught.append(signum)

    for s in previous:
        signal.signal(s, on_signal)
    try:
        yield caught
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class _Output:
    """Where the reply goes: answer on stdout, thinking and notes on stderr.

    A closed stdout (`| head`) stops the reply quietly; text bound for a terminal has its
    control sequences neutralised.
    """

    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json
        self.dim = sys.stderr.isatty()
        self.raw_out = not sys.stdout.isatty()
        self.raw_err = not sys.stderr.isatty()
        self.closed = False
        self.thinking = False  # the model is (or is about to be) thinking: Ctrl+C answers now

    def note(self, text: str) -> None:
        print(f"qwen3tui: {text}", file=sys.stderr, flush=True)

    def _write(self, stream: Any, text: str, raw: bool) -> None:
        if self.closed:
            return
        try:
            stream.write(text if raw else neutralize(text))
            stream.flush()
        except BrokenPipeError:
            self.closed = True

    def stream(self, events: Iterator[Any]) -> TurnEnded:
        ended: TurnEnded | None = None
        for event in events:
            if isinstance(event, ThinkingDone | AnswerDelta):
                self.thinking = False
            if isinstance(event, TurnEnded):
                ended = event
            elif isinstance(event, WaitingForSession):
                self.note(event.message)
            elif isinstance(event, ContextNotice):
                self.note(event.message)
            elif self.as_json:
                continue
            elif isinstance(event, ThinkingDelta):
                text = f"{DIM}{neutralize(event.text)}{RESET}" if self.dim else event.text
                self._write(sys.stderr, text, raw=True)
            elif isinstance(event, ThinkingDone):
                self._write(sys.stderr, "\n", raw=True)
                if event.cut_by_user:
                    self.note("answering now, as asked (Ctrl+C again stops the reply).")
            elif isinstance(event, AnswerDelta):
                self._write(sys.stdout, event.text, self.raw_out)
            if self.closed:  # the reader is gone (`| head`): stop generating, quietly
                events.close()  # type: ignore[attr-defined]
                return TurnEnded(Outcome.INTERRUPTED, "", "")
        if ended is None:
            ended = TurnEnded(Outcome.INTERRUPTED, "", "")
        if not self.as_json:
            self._write(sys.stdout, "\n", raw=True)
            if ended.outcome in (Outcome.CANCELLED, Outcome.INTERRUPTED):
                self.note("stopped; the partial reply was kept.")
        return ended

    def json(self, result: dict[str, Any]) -> None:
        self._write(sys.stdout, json.dumps(result, ensure_ascii=False) + "\n", raw=True)


def _summary_json(ended: TurnEnded, options: ChatOptions) -> dict[str, Any]:
    s = ended.summary
    if s is None:
        return {
            "thinking": ended.thinking,
            "answer": ended.answer,
            "outcome": ended.outcome.value,
            "error": ended.error,
        }
    return {
        "thinking": s.thinking,
        "answer": s.answer,
        "outcome": ended.outcome.value,
        "finish_reason": s.finish_reason,
        "thinking_enabled": s.thinking_enabled,
        "thinking_budget": s.thinking_budget,
        "thinking_budget_hit": s.thinking_budget_hit,
        "usage": asdict(s.usage),
        "timings": asdict(s.timings),
        "token_ids": s.token_ids,
        "prefilled_tokens": s.prefilled_tokens,
    }


def _progress_printer() -> Callable[[LoadProgress], None] | None:
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
