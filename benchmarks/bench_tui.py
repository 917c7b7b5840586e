"""Decode speed of a real reply driven through the chat app against `qwen3tui ask`, side by side.

One engine is loaded once and serves both sides in this process, so the checkpoint, settings,
KV cache and CPU thread policy are the same. Each round runs `qwen3tui ask` (its real `run`,
with the command line parsed by the real parser) and then one reply typed into the real
`Qwen3App` (headless under Textual's `run_test`, its real store and saver in a temporary
QWEN3TUI_HOME, the thinking pane streaming). End-of-turn ids are switched off so both sides
decode exactly `--tokens` tokens; greedy sampling makes them decode the same text. Decode tok/s
and TTFT are the engine's own Summary timings, the same clock for both.

This process's main thread (the app's UI thread) never computes: the engine loads on a thread
of its own, as the app loads it, and each `ask` runs on a thread of its own, as the only
computing thread of an `ask` process. The CPU kernels use OpenMP, which keeps a pool of worker
threads per thread that computes; while more pool threads exist than cores, every worker stops
spinning between kernels and sleeps, and decode on 2 cores runs at ~0.86 of its speed
(benchmarks/RESULTS.md). An `ask` run on the main thread would leave its pool there, beside
every app reply's: a slowdown that neither real process has.

    python benchmarks/bench_tui.py                      # full-size Qwen3-1.7B shape, bf16
    python benchmarks/bench_tui.py --quantize int8
    python benchmarks/bench_tui.py --small --rounds 2   # a quick check (a small model)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(HERE)]

from bench_engine import BenchError, ensure_checkpoint, find_shared_dir  # noqa: E402

SMALL_CHECKPOINT = HERE / "checkpoints" / "qwen3-small-random"
# Small enough to load in a second and decode at ~100 tok/s on 2 cores, where the UI's work
# per token weighs most; the real vocabulary, so the text the panes render is ordinary.
SMALL_CONFIG: dict[str, Any] = {
    "hidden_size": 256,
    "intermediate_size": 768,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
}
PROMPT = "Explain how a lighthouse keeps ships away from the rocks, step by step."
SIZE = (120, 40)  # the headless terminal
T = TypeVar("T")


@dataclass
class Run:
    """One reply: the engine's Summary timings and where this process's CPU time went."""

    side: str
    decode_tok_s: float
    ttft_s: float
    tokens: int
    wall_s: float
    cpu_s: dict[str, float] = field(default_factory=dict)  # by thread role
    updates: int = 0  # the app's stream updates (drains that showed something) during the reply
    frames: int = 0  # the app's screen updates during the reply


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except BenchError as err:
        print(f"bench_tui: {err}", file=sys.stderr)
        return 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=None, help="checkpoint dir (reuse/build)")
    p.add_argument("--small", action="store_true", help="a small random model: a quick run")
    p.add_argument("--shared", type=Path, default=None, help="real config + tokenizer files")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    p.add_argument("--quantize", default=None, choices=("int8", "int4"))
    p.add_argument("--tokens", type=int, default=192, help="tokens decoded per reply (192)")
    p.add_argument("--rounds", type=int, default=3, help="ask + TUI pairs, alternating (3)")
    p.add_argument(
        "--thinking-display",
        default="collapsed",
        choices=("expanded", "collapsed", "hidden"),
        help="the thinking pane's display (collapsed, the default, streams live while thinking)",
    )
    p.add_argument(
        "--ui-cpu-share",
        type=_shares,
        default=["app"],
        metavar="app|off|X,...",
        help="the TUI's CPU budget for stream updates (UpdatePacer.cpu_share): the app's own"
        " (app, the default), none (off) or a share of one core; several, comma-separated,"
        " run one TUI reply each per round (app,off shows what the budget buys)",
    )
    args = p.parse_args(argv)
    if args.small and args.checkpoint is not None:
        p.error("--small builds its own checkpoint; pass --checkpoint or --small, not both")
    return args


def _shares(text: str) -> list[str | float | None]:
    out: list[str | float | None] = []
    for part in text.split(","):
        if part in ("app", "off"):
            out.append(None if part == "off" else part)
            continue
        try:
            value = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not a share, 'off' or 'app'") from None
        if not 0 < value <= 1:
            raise argparse.ArgumentTypeError(f"{part!r}: a share is > 0 and <= 1")
        out.append(value)
    return out


def run(args: argparse.Namespace) -> int:
    if args.small:
        ckpt = ensure_small_checkpoint(args.shared)
    else:
        ckpt = ensure_checkpoint(args.checkpoint, args.shared, "bfloat16")
    home = tempfile.mkdtemp(prefix="qwen3tui-bench-tui-")
    os.environ["QWEN3TUI_HOME"] = home  # the real store and settings, in a scratch folder
    model_args = ["--model", str(ckpt), "--device", "cpu", "--dtype", args.dtype]
    model_args += ["--context", str(_round_up(args.tokens + 512))]
    if args.quantize:
        model_args += ["--quantize", args.quantize]

    from qwen3tui import engine_choice
    from qwen3tui.cli import build_parser

    tui_args = build_parser().parse_args(model_args)
    engine_choice.choose(tui_args)
    _say(f"loading {ckpt} ({args.dtype}{', ' + args.quantize if args.quantize else ''}) ...")
    engine = on_own_thread(lambda: engine_choice.open_engine(tui_args))
    summaries = record_summaries(engine)
    force_length(engine)
    bench = Bench(engine, summaries, model_args, args, str(ckpt))

    _say("warm-up: one short reply each way (not counted)")
    bench.ask(16)
    bench.tui(16, args.ui_cpu_share[0])
    rounds: list[list[Run]] = []
    for i in range(args.rounds):
        runs = [bench.ask(args.tokens)]
        runs += [bench.tui(args.tokens, share) for share in args.ui_cpu_share]
        _say(f"round {i + 1}: " + "; ".join(f"{r.side} {r.decode_tok_s:.2f} tok/s" for r in runs))
        rounds.append(runs)
    print(report(rounds, engine, args))
    return 0


# -- the two sides ---------------------------------------------------------------------------


class Bench:
    def __init__(
        self,
        engine: Any,
        summaries: list[Any],
        model_args: list[str],
        args: argparse.Namespace,
        model_name: str,
    ) -> None:
        self.engine = engine
        self.summaries = summaries
        self.model_args = model_args
        self.args = args
        self.model_name = model_name

    def ask(self, tokens: int) -> Run:
        """`qwen3tui ask` as its command line runs it, with the loaded engine."""
        from qwen3tui import ask, engine_choice
        from qwen3tui.cli import build_parser

        argv = ["ask", *self.model_args, "--think", "--budget", "off"]
        argv += ["--max-tokens", str(tokens), "--temperature", "0", PROMPT]
        parsed = build_parser().parse_args(argv)
        self.engine.reset_cache()
        self.summaries.clear()
        with (
            _engine_opened_as(engine_choice, self.engine),
            _output_to_files(),
            _cpu_by_role() as cpu,
        ):
            t0 = time.perf_counter()
            code = on_own_thread(lambda: ask.run(parsed))
            wall = time.perf_counter() - t0
        if code != 0:
            raise BenchError(f"ask exited with {code}")
        return self._run("ask", wall, cpu)

    def tui(self, tokens: int, share: str | float | None) -> Run:
        """One reply typed into the real app (headless), from submit to the turn saved;
        `share`: the pacer's CPU budget ("app": as the app sets it)."""
        self.engine.reset_cache()
        self.summaries.clear()
        cpu: dict[str, float] = {}
        counts: dict[str, int] = {}
        wall = asyncio.run(self._tui_reply(tokens, share, cpu, counts))
        return self._run(_tui_label(share), wall, cpu, **counts)

    async def _tui_reply(
        self, tokens: int, share: str | float | None, cpu: dict[str, float], counts: dict[str, int]
    ) -> float:
        from qwen3tui.engine.options import SamplingOverrides
        from qwen3tui.settings import TurnSettings, UserSettings
        from qwen3tui.store import SessionStore
        from qwen3tui.tui.app import Qwen3App

        turn = TurnSettings(
            thinking=True,
            thinking_budget=None,
            max_tokens=tokens,
            sampling=SamplingOverrides(temperature=0.0),
        )
        app = Qwen3App(
            engine_factory=lambda progress: self.engine,
            model_name=self.model_name,
            store=SessionStore.open(),
            settings=UserSettings(thinking_display=self.args.thinking_display, turn=turn),
        )
        frames = render_frames(app)
        finished = asyncio.Event()
        app.turn_finished = lambda t: finished.set()  # type: ignore[method-assign]
        async with app.run_test(size=SIZE) as pilot:
            while app.engine is None:
                await pilot.pause(0.01)
            chat = app.chat
            assert chat is not None
            if share != "app":
                chat.pacer.cpu_share = share
            updates = count_updates(chat)
            frames.clear()
            with _cpu_by_role() as used:
                t0 = time.perf_counter()
                chat.submit(PROMPT)
                await finished.wait()
                wall = time.perf_counter() - t0
            cpu.update(used)
            counts.update(updates=len(updates), frames=len(frames))
            await app.quit_cleanly()
        return wall

    def _run(
        self, side: str, wall: float, cpu: dict[str, float], updates: int = 0, frames: int = 0
    ) -> Run:
        if not self.summaries:
            raise BenchError(f"{side}: the engine produced no Summary")
        s = self.summaries[-1]
        u, t = s.usage, s.timings
        tokens = u.thinking_tokens + u.answer_tokens
        return Run(side, t.decode_tok_s, t.ttft_s, tokens, wall, cpu, updates, frames)


def on_own_thread(work: Callable[[], T]) -> T:
    """Run `work` on a new thread and wait for it: its OpenMP pool ends with the thread."""
    result: list[T] = []
    failed: list[BaseException] = []

    def body() -> None:
        try:
            result.append(work())
        except BaseException as err:  # noqa: BLE001 -- raised again on the caller's thread
            failed.append(err)

    thread = threading.Thread(target=body, name="bench-compute")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return result[0]


def record_summaries(engine: Any) -> list[Any]:
    """Keep every Summary the engine yields (both sides see the same engine)."""
    from qwen3tui.engine import Summary

    seen: list[Any] = []
    chat = engine.chat

    def recording_chat(*a: Any, **k: Any) -> Iterator[Any]:
        for event in chat(*a, **k):
            if isinstance(event, Summary):
                seen.append(event)
            yield event

    engine.chat = recording_chat
    return seen


def force_length(engine: Any) -> None:
    """No end-of-turn ids: every reply decodes exactly max_tokens (random weights would
    otherwise stop wherever greedy decoding happens to pick one)."""
    engine.tokenizer._eos_token_ids = frozenset()


def render_frames(app: Any) -> list[float]:
    """Headless Textual skips encoding frames for the terminal; do it, so that a frame costs
    the UI thread what it would in a terminal (as benchmarks/ui_stream.py does). Returns the
    list each frame's time is added to."""
    original = app._display
    console = app.console
    frames: list[float] = []

    def display(screen: Any, renderable: Any) -> None:
        render = getattr(renderable, "render_segments", None)
        if render is not None and not app._batch_count:
            render(console)
            frames.append(time.perf_counter())
        original(screen, renderable)

    app._display = display
    return frames


def count_updates(chat: Any) -> list[float]:
    """The times of the chat's stream updates that showed something, from now on."""
    updates: list[float] = []
    drain = chat.drain

    async def counted() -> None:
        turn = chat.turn
        if turn is not None and turn.mailbox._items:
            updates.append(time.perf_counter())
        await drain()

    chat.drain = counted
    return updates


@contextlib.contextmanager
def _engine_opened_as(engine_choice: Any, engine: Any) -> Iterator[None]:
    """ask opens its engine through engine_choice.open_engine: hand it the loaded one."""
    original = engine_choice.open_engine
    engine_choice.open_engine = lambda args, progress=None: engine
    try:
        yield
    finally:
        engine_choice.open_engine = original


@contextlib.contextmanager
def _output_to_files() -> Iterator[None]:
    """ask's answer and thinking go to files (as `ask > out 2> err`); stdin is empty."""
    with (
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
        open(os.devnull) as null,
    ):
        saved = sys.stdin
        sys.stdin = null
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                yield
        finally:
            sys.stdin = saved


# -- where the CPU time went ----------------------------------------------------------------


@contextlib.contextmanager
def _cpu_by_role() -> Iterator[dict[str, float]]:
    """CPU seconds of this process's threads over the block, by role: the main thread (the
    app's UI thread), the saver, threads Python does not know (OpenMP workers still alive),
    and the rest, ended meanwhile or not (ask's thread and the app's generation worker, each
    with its OpenMP workers)."""
    result: dict[str, float] = {}
    before, total_before = _thread_cpu(), _process_cpu()
    yield result
    after, total_after = _thread_cpu(), _process_cpu()
    tick = os.sysconf("SC_CLK_TCK")
    # The process's own count keeps the time of threads that have ended.
    live = sum(ticks - before.get(tid, ("", 0))[1] for tid, (_, ticks) in after.items())
    if total_after - total_before - live > 0:
        result["worker"] = (total_after - total_before - live) / tick
    main_tid = threading.main_thread().native_id
    names = {t.native_id: t.name for t in threading.enumerate()}
    for tid, (comm, ticks) in after.items():
        spent = (ticks - before.get(tid, (comm, 0))[1]) / tick
        if spent <= 0:
            continue
        name = names.get(tid, comm)
        if tid == main_tid:
            role = "main/UI"
        elif "saver" in name.lower():
            role = "saver"
        elif tid not in names:
            role = "compute"  # threads Python does not know: OpenMP workers
        else:
            role = "worker"  # the app's generation worker, still running
        result[role] = result.get(role, 0.0) + spent


def _process_cpu() -> int:
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _thread_cpu() -> dict[int, tuple[str, int]]:
    out: dict[int, tuple[str, int]] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        out[int(task.name)] = (comm, int(fields[11]) + int(fields[12]))
    return out


# -- report ---------------------------------------------------------------------------------


def report(rounds: list[list[Run]], engine: Any, args: argparse.Namespace) -> str:
    import platform

    info = engine.info
    quant = f", {args.quantize}" if args.quantize else ""
    sides = [r.side for r in rounds[0]]
    tuis = sides[1:]
    lines = [
        f"TUI vs ask, {info.model} ({info.dtype}{quant}) on {info.device},"
        f" {args.tokens} tokens per reply, greedy, thinking pane {args.thinking_display};"
        f" {os.cpu_count()} CPUs, {platform.processor() or platform.machine()},"
        f" {time.strftime('%Y-%m-%d %H:%M')}",
        "",
        "| round | "
        + " | ".join(f"{side} tok/s" for side in sides)
        + " | "
        + " | ".join(f"{side} / ask" for side in tuis)
        + " | "
        + " | ".join(f"{side} TTFT s" for side in sides)
        + " | "
        + " | ".join(f"{side} UI CPU" for side in tuis)
        + " |",
        "|---" * (1 + len(sides) * 2 + len(tuis) * 2) + "|",
    ]

    def row(label: str, runs: list[Run], ratios: list[float] | None = None) -> str:
        ask = runs[0]
        ratios = ratios or [r.decode_tok_s / ask.decode_tok_s for r in runs[1:]]
        return (
            f"| {label} | "
            + " | ".join(f"{r.decode_tok_s:.2f}" for r in runs)
            + " | "
            + " | ".join(f"{x:.2f}" for x in ratios)
            + " | "
            + " | ".join(f"{r.ttft_s:.2f}" for r in runs)
            + " | "
            + " | ".join(f"{_ui_share(r):.0%}" for r in runs[1:])
            + " |"
        )

    for i, runs in enumerate(rounds, 1):
        lines.append(row(str(i), runs))
    medians = []
    for k, side in enumerate(sides):
        got = [runs[k] for runs in rounds]
        medians.append(
            Run(
                side,
                statistics.median(r.decode_tok_s for r in got),
                statistics.median(r.ttft_s for r in got),
                0,
                statistics.median(r.wall_s for r in got),
                {"main/UI": statistics.median(r.cpu_s.get("main/UI", 0.0) for r in got)},
            )
        )
    median_ratios = [
        statistics.median(runs[k].decode_tok_s / runs[0].decode_tok_s for runs in rounds)
        for k in range(1, len(sides))
    ]
    lines.append(row("median", medians, median_ratios))  # ratios: the per-round ones
    lines.append("")
    ask_rates = [runs[0].decode_tok_s for runs in rounds]
    lines.append(f"spread: ask {min(ask_rates):.2f}-{max(ask_rates):.2f} tok/s")
    for k, side in enumerate(tuis, 1):
        rates = [runs[k].decode_tok_s for runs in rounds]
        ratios = [runs[k].decode_tok_s / runs[0].decode_tok_s for runs in rounds]
        lines.append(
            f"spread: {side} {min(rates):.2f}-{max(rates):.2f} tok/s, per round {side}/ask"
            f" {min(ratios):.2f}-{max(ratios):.2f}; median of the per-round ratios"
            f" {statistics.median(ratios):.2f} (target >= 0.90)"
        )
    lines.append(
        "UI CPU: the app's UI thread's CPU time over the reply's wall time (submit to saved)."
        " CPU seconds by thread, each run: "
        + "; ".join(f"{r.side} {_cpu_all(r)}" for r in rounds[-1])
    )
    for k, side in enumerate(tuis, 1):
        got = [runs[k] for runs in rounds]
        lines.append(
            f"{side}: stream updates {_per_s(got, 'updates')}/s, screen updates"
            f" {_per_s(got, 'frames')}/s over the reply (median of the rounds)"
        )
    return "\n".join(lines)


def _per_s(runs: list[Run], what: str) -> str:
    return f"{statistics.median(getattr(r, what) / r.wall_s for r in runs):.1f}"


def _tui_label(share: str | float | None) -> str:
    if share == "app":
        from qwen3tui.tui.generation_worker import CPU_SHARE

        return f"TUI (budget {CPU_SHARE:g})"
    return "TUI (no budget)" if share is None else f"TUI (budget {share:g})"


def _ui_share(r: Run) -> float:
    return r.cpu_s.get("main/UI", 0.0) / r.wall_s if r.wall_s else 0.0


def _cpu_all(r: Run) -> str:
    return ", ".join(f"{role} {sec:.1f}" for role, sec in sorted(r.cpu_s.items()))


# -- checkpoint -----------------------------------------------------------------------------


def ensure_small_checkpoint(shared: Path | None) -> Path:
    """A small random checkpoint with the real tokenizer, built once beside the big one."""
    from bench_engine import checkpoint_complete

    if checkpoint_complete(SMALL_CHECKPOINT):
        return SMALL_CHECKPOINT
    import torch

    from qwen3tui.engine.random_checkpoint import TINY_CONFIG, write_random_checkpoint

    source = find_shared_dir(shared)
    partial = SMALL_CHECKPOINT.with_name(SMALL_CHECKPOINT.name + ".partial")
    write_random_checkpoint(
        partial,
        config={**TINY_CONFIG, **SMALL_CONFIG},
        tokenizer_dir=source,
        dtype=torch.bfloat16,
    )
    partial.rename(SMALL_CHECKPOINT)
    return SMALL_CHECKPOINT


def _round_up(n: int, step: int = 256) -> int:
    return -(-n // step) * step


def _say(text: str) -> None:
    print(f"[bench_tui] {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
