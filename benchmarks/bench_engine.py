"""Benchmark this engine against `transformers` on a full-size Qwen3-1.7B-shaped checkpoint.

    python benchmarks/bench_engine.py --device cpu
    python benchmarks/bench_engine.py --device cuda --repeats 3

Builds (or reuses) a random-weights checkpoint with the exact Qwen3-1.7B layout and the real
tokenizer, measures the device's memory bandwidth (the decode ceiling), then runs each engine
in its own process: prefill tok/s and time to first token per prompt length, decode tok/s,
peak memory and load time; and checks that both engines pick the same greedy tokens. Prints a
Markdown table and writes every number to JSON. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(HERE)]

from _bench_report import compare, correctness_line, git_commit, machine, table  # noqa: E402

DEFAULT_CHECKPOINT = HERE / "checkpoints" / "qwen3-1.7b-random"
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
# Any text will do: the weights are random. Real words give the tokenizer ordinary ids.
PROMPT_TEXT = (
    "The lighthouse keeper climbed the spiral stairs each evening, counting one hundred and "
    "twelve steps, to light the lamp that warned ships away from the rocks below. Over the "
    "years he learned the moods of the sea, the smell of a coming storm, and the names of the "
    "fishermen who waved to him from their boats as they came home with the tide. "
)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except BenchError as err:
        print(f"bench_engine: {err}", file=sys.stderr)
        return 2


class BenchError(Exception):
    """A one-line problem with the benchmark's input; printed without a traceback."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--dtype", choices=tuple(DTYPE_BYTES), default="bfloat16")
    p.add_argument(
        "--quantize",
        type=_quantizations,
        default=[None],
        help="our engine's runs, e.g. none,int8,int4 or none,fp8 on CUDA (default none;"
        " transformers stays bf16)",
    )
    p.add_argument(
        "--busy-cores",
        type=_count,
        default=0,
        help="spinning processes kept running beside each engine (a user's other programs)",
    )
    p.add_argument(
        "--forced-steps",
        type=_count,
        default=256,
        help="decode steps on fixed tokens whose logits the quantized runs compare to bf16",
    )
    p.add_argument("--decode-tokens", type=_positive, default=256)
    p.add_argument("--prompt-lens", type=_lengths, default=[128, 2048], help="e.g. 128,2048")
    p.add_argument(
        "--repeats",
        type=_positive,
        default=None,
        help="runs per prompt length, best kept (default: 1 on cpu, 3 on cuda)",
    )
    p.add_argument(
        "--check-tokens",
        type=_positive,
        default=32,
        help="greedy tokens compared between the engines",
    )
    p.add_argument("--skip-peer", action="store_true", help="do not run transformers")
    p.add_argument(
        "--peer-static",
        action="store_true",
        help="also run transformers with a static cache + torch.compile",
    )
    p.add_argument("--threads", type=_positive, default=None, help="torch CPU threads")
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help=f"checkpoint dir to reuse or build (default {_rel(DEFAULT_CHECKPOINT)})",
    )
    p.add_argument(
        "--shared",
        type=Path,
        default=None,
        help="dir with the real config.json and tokenizer files (for building)",
    )
    p.add_argument(
        "--bandwidth-mib",
        type=_positive,
        default=None,
        help="bandwidth buffer size (default: 1024 on cpu, 4096 on cuda)",
    )
    p.add_argument("--out", type=Path, default=None, help="JSON file (default benchmarks/out/)")
    args = p.parse_args(argv)
    cuda = args.device == "cuda"
    args.repeats = args.repeats or (3 if cuda else 1)
    args.bandwidth_mib = args.bandwidth_mib or (4096 if cuda else 1024)
    return args


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must be 0 or more")
    return value


QUANTIZATIONS = {"none": None, "int8": "int8", "int4": "int4", "fp8": "fp8"}


def _quantizations(text: str) -> list[str | None]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in QUANTIZATIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"'{text}': give one or more of none, int8, int4, fp8, comma-separated"
        )
    return list(dict.fromkeys(QUANTIZATIONS[n] for n in names))


def _lengths(text: str) -> list[int]:
    lens = [_positive(part.strip()) for part in text.split(",") if part.strip()]
    if not lens:
        raise argparse.ArgumentTypeError("give at least one prompt length, e.g. 128,2048")
    return lens


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


# -- the run -------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda, but torch sees no CUDA device. Use --device cpu.")
    started = dt.datetime.now(dt.timezone.utc)
    ckpt = ensure_checkpoint(args.checkpoint, args.shared, args.dtype)
    config = json.loads((ckpt / "config.json").read_text())
    weight_bytes = parameter_count(config) * DTYPE_BYTES[args.dtype]
    prompts = Prompts(ckpt)
    lens = args.prompt_lens
    short = min(lens)
    context = _round_up(max(max(lens), short + 4) + args.decode_tokens + args.check_tokens + 64)
    # The forced steps run after a 16-token prompt in the same cache.
    context = max(context, _round_up(16 + args.forced_steps + 1))
    context = min(context, int(config.get("max_position_embeddings", context)))

    _warm_page_cache(ckpt)
    work = Path(tempfile.mkdtemp(prefix="bench_engine-"))
    try:
        job: dict[str, Any] = {
            "checkpoint": str(ckpt),
            "device": args.device,
            "dtype": args.dtype,
            "threads": args.threads,
            "repeats": args.repeats,
            "context_length": context,
            "warmup_ids": prompts.ids(16, 7),
            "warmup_tokens": 8,
            "prompts": {str(n): prompts.ids(n) for n in lens},
            # Alternatives, in case greedy decoding on random weights ends the reply early.
            "decode_prompts": [prompts.ids(short, offset) for offset in (0, 3, 11, 29)],
            "decode_tokens": args.decode_tokens,
            "check_ids": prompts.ids(short),
            "check_tokens": args.check_tokens,
        }
        _say(f"checkpoint: {ckpt} ({weight_bytes / 1e9:.2f} GB of weights in {args.dtype})")
        bandwidth = _bandwidth(job, args.bandwidth_mib, work)
        gb_s = bandwidth["gb_s"]

        results = []
        forced_ids = prompts.ids(16 + args.forced_steps, 5) if args.forced_steps else None
        job["forced_ids"], job["forced_prompt"] = forced_ids, 16
        job["busy_cores"] = args.busy_cores
        ours_runs: dict[str | None, dict[str, Any]] = {}
        for quantize in args.quantize:
            tag = quantize or "bf16"
            ours_logits = str(work / f"ours_{tag}_logits.pt")
            ours_job = {
                **job,
                "quantize": quantize,
                "logits_path": ours_logits,
                "forced_logits_path": str(work / f"ours_{tag}_forced.pt"),
                "tag": tag,
            }
            ours = _worker("ours", ours_job, work)
            ours["logits_path"] = ours_logits
            ours["forced_logits_path"] = ours_job["forced_logits_path"]
            ours_runs[quantize] = ours
            ours_bytes = ours.get("model_bytes") if quantize else weight_bytes
            label = _label_ours(args.dtype, quantize)
            results.append(_row(ours, label, ours_bytes or weight_bytes, gb_s, args))
        # transformers is checked against our bf16 run where there is one.
        ours = ours_runs.get(None) or ours_runs[args.quantize[0]]
        ours_logits = ours["logits_path"]
        quant_error = _quantization_error(ours_runs, work)

        peer_status = "skipped (--skip-peer)"
        peer: dict[str, Any] | None = None
        peer_logits = str(work / "peer_logits.pt")
        if not args.skip_peer:
            if importlib.util.find_spec("transformers") is None:
                peer_status = "not installed"
                _say("peer: not installed")
            else:
                peer_job = {**job, "logits_path": peer_logits}
                peer_job["ours_check_tokens"] = ours.get("check_tokens")
                peer = _worker("peer", peer_job, work)
                peer_status = peer.get("error", "ran")
                results.append(_row(peer, f"transformers ({args.dtype})", weight_bytes, gb_s, args))
                if args.peer_static:
                    static = _worker("peer", {**job, "static": True}, work)
                    label = f"transformers static+compile ({args.dtype})"
                    results.append(_row(static, label, weight_bytes, gb_s, args))
            if args.device == "cuda":  # the plain library line: what cuBLAS alone reaches
                chain = _worker("chain", job, work)
                label = f"plain library: cuBLAS GEMV chain ({args.dtype})"
                results.append(_row(chain, label, weight_bytes, gb_s, args))

        # Measured again at the end: on a shared machine one measurement can catch a busy
        # moment, and a low bandwidth would flatter every engine's % of the ceiling.
        bandwidth = _bandwidth(job, args.bandwidth_mib, work, before=bandwidth)
        gb_s = bandwidth["gb_s"]
        for row in results:
            if "ceiling_tok_s" in row:
                row["ceiling_tok_s"] = gb_s * 1e9 / row["weight_bytes"]

        check = None
        reason = f"peer {peer_status}"
        if peer and "error" not in peer and "error" not in ours:
            check = compare(
                ours["check_tokens"],
                peer["check_tokens"],
                ours_logits if ours.get("check_logits_saved") else None,
                peer_logits if peer.get("check_logits_saved") else None,
            )
            check["label"] = f"ours vs transformers, {args.dtype}, prompt of {short} tokens"
            check["divergence"] = peer.get("divergence")
        elif "error" in ours:
            reason = "our engine failed"
    finally:
        shutil.rmtree(work, ignore_errors=True)

    report = {
        "date": started.isoformat(timespec="seconds"),
        "commit": git_commit(),
        "device": args.device,
        "dtype": args.dtype,
        "quantize": args.quantize,
        "busy_cores": args.busy_cores,
        "threads": args.threads,
        "machine": machine(args.device),
        "checkpoint": str(ckpt),
        "layout": _layout(config),
        "weight_bytes": weight_bytes,
        "bandwidth": bandwidth,
        "ceiling_tok_s": gb_s * 1e9 / weight_bytes,
        "context_length": context,
        "prompt_lens": lens,
        "decode_tokens": args.decode_tokens,
        "repeats": args.repeats,
        "peer": peer_status,
        "correctness": check,
        "quantization_error": quant_error,
        "results": results,
        "wall_s": (dt.datetime.now(dt.timezone.utc) - started).total_seconds(),
    }
    print(render(report, check, reason))
    if quant_error:
        print("\n" + quant_error_table(quant_error, args.forced_steps))
    out = args.out or HERE / "out" / f"{args.device}-{started:%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nJSON: {_rel(out.resolve())}")
    return 0 if all("error" not in r for r in results) else 1


def render(report: dict[str, Any], check: dict[str, Any] | None, reason: str) -> str:
    m = report["machine"]
    bw = report["bandwidth"]
    hw = m.get("gpu") or m["cpu"]
    quantized = [q for q in report["quantize"] if q]
    quant = f", ours also {'/'.join(quantized)}" if quantized else ""
    busy = report.get("busy_cores") or 0
    quant += f", {busy} core{'s' if busy > 1 else ''} kept busy" if busy else ", quiet"
    lines = [
        f"## qwen3tui engine benchmark: {report['device']}, {report['dtype']}{quant}",
        "",
        f"- date {report['date']}, commit {report['commit']}",
        f"- machine: {hw}; {m['cores']} CPU cores"
        + (f", {report['threads']} threads" if report["threads"] else f", {bw['threads']} threads")
        + f"; torch {m['torch']}"
        + (f", CUDA {m['cuda']}" if m.get("cuda") else "")
        + f"; transformers {m['transformers'] or 'not installed'}",
        f"- bandwidth {bw['gb_s']:.1f} GB/s (read {bw['read_gb_s']:.1f},"
        f" copy {bw['copy_gb_s']:.1f}: {bw['method']}; measured before and after the engines:"
        f" {', '.join(f'{x:.1f}' for x in bw['measurements_gb_s'])} GB/s, the higher used)",
        f"- decode ceiling {report['ceiling_tok_s']:.1f} tok/s"
        f" = {report['weight_bytes'] / 1e9:.2f} GB of weights read per token / bandwidth"
        + _quantized_ceiling(report["results"]),
        f"- checkpoint {report['checkpoint']} ({report['layout']}); decode over"
        f" {report['decode_tokens']} new tokens after a {min(report['prompt_lens'])}-token prompt;"
        f" best of {report['repeats']} per prompt length; peak memory ="
        + (" peak CUDA allocated" if report["device"] == "cuda" else " peak RSS"),
        "",
        table(report["results"], report["prompt_lens"]),
        "",
        correctness_line(check, reason),
        *_compile_lines(report["results"]),
    ]
    return "\n".join(lines)


def _quantized_ceiling(results: list[dict[str, Any]]) -> str:
    """The quantized row's own ceiling: it reads fewer bytes per token."""
    for r in results:
        if r.get("quantize") and r.get("ceiling_tok_s"):
            return (
                f"; {r['label']}: {r['ceiling_tok_s']:.1f} tok/s"
                f" = {r['weight_bytes'] / 1e9:.2f} GB of weights read per token / bandwidth"
            )
    return ""


def _compile_lines(results: list[dict[str, Any]]) -> list[str]:
    lines = []
    for r in results:
        c = r.get("compile")
        if not c:
            continue
        before = c.get("decode_before_compiled")
        text = f"{r['label']}: background compile " + (
            f"ready after {c['waited_s']:.1f} s more" if c["compiled"] else f"FAILED ({c['error']})"
        )
        if before:
            text += f"; decode before it was ready {before['decode_tok_s']:.1f} tok/s"
        if c.get("child_error"):
            text += f"; kernels not compiled in a child ({c['child_error']})"
        lines.append(text + " (the table is after it)")
    return lines


def _row(
    result: dict[str, Any], label: str, weight_bytes: int, gb_s: float, args: argparse.Namespace
) -> dict[str, Any]:
    row = {**result, "label": label}
    if "error" in result:
        _say(f"{label}: failed: {result['error']}")
        return row
    row["weight_bytes"] = weight_bytes
    row["ceiling_tok_s"] = gb_s * 1e9 / weight_bytes
    row["decode"] = {**result["decode"], "wanted": args.decode_tokens}
    peak = result["peak"]
    row["peak_bytes"] = peak.get("peak_cuda_allocated_bytes", peak["peak_rss_bytes"])
    return row


def _bandwidth(
    job: dict[str, Any], mib: int, work: Path, before: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Bandwidth measured now; with `before`, the better of the two measurements."""
    now = _worker("bandwidth", {**job, "buffer_mib": mib}, work)
    if "error" in now:
        raise BenchError(f"measuring the bandwidth failed: {now['error']}")
    _say(f"bandwidth: {now['gb_s']:.1f} GB/s ({now['method']})")
    if before is None:
        return {**now, "measurements_gb_s": [now["gb_s"]]}
    best = now if now["gb_s"] > before["gb_s"] else before
    return {**best, "measurements_gb_s": [*before["measurements_gb_s"], now["gb_s"]]}


def _label_ours(dtype: str, quantize: str | None) -> str:
    return f"ours ({dtype}" + (f", {quantize})" if quantize else ")")


def _quantization_error(runs: dict[str | None, dict[str, Any]], work: Path) -> list[dict]:
    """Each quantized run's forced-step logits against the bf16 run's (when both ran)."""
    base = runs.get(None)
    if not base or "error" in base or not base.get("forced_saved"):
        return []
    import torch

    ref = torch.load(base["forced_logits_path"])
    out = []
    for quantize, run in runs.items():
        if quantize is None or "error" in run or not run.get("forced_saved"):
            continue
        got = torch.load(run["forced_logits_path"])
        out.append({"quantize": quantize, **logit_error(got, ref)})
    return out


def logit_error(got, ref) -> dict[str, float]:
    """max |logit diff|, mean KL(ref || got) of the next-token distributions, top-1 agreement."""
    import torch

    log_p = torch.log_softmax(ref.double(), dim=-1)
    log_q = torch.log_softmax(got.double(), dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=-1)
    return {
        "steps": int(ref.shape[0]),
        "max_abs_logit_diff": float((got - ref).abs().max()),
        "mean_kl": float(kl.mean()),
        "max_kl": float(kl.max()),
        "top1_agreement": float((got.argmax(-1) == ref.argmax(-1)).double().mean()),
        "ref_logit_std": float(ref.std()),
    }


def quant_error_table(rows: list[dict], steps: int) -> str:
    lines = [
        f"quantization error against our bf16 run, over {steps} forced decode steps"
        " (the same tokens fed to each):",
        "",
        "| ours | max abs logit diff | mean KL (nats) | max KL | top-1 agreement |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['quantize']} | {r['max_abs_logit_diff']:.3f} | {r['mean_kl']:.5f}"
            f" | {r['max_kl']:.4f} | {100 * r['top1_agreement']:.1f}% |"
        )
    lines.append(f"\n(bf16 logits: std {rows[0]['ref_logit_std']:.3f} per step)" if rows else "")
    return "\n".join(lines)


def _worker(name: str, job: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run benchmarks/_bench_<name>.py on `job` in a fresh process; its JSON result."""
    script = {
        "bandwidth": "_bench_bandwidth.py",
        "ours": "_bench_ours.py",
        "peer": "_bench_peer.py",
        "chain": "_bench_chain.py",
    }[name]
    tag = (
        name
        + ("-static" if job.get("static") else "")
        + (f"-{job['tag']}" if job.get("tag") else "")
    )
    job_file, result_file = work / f"{tag}.job.json", work / f"{tag}.result.json"
    job_file.write_text(json.dumps(job))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), str(HERE)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    if job.get("threads"):
        env["OMP_NUM_THREADS"] = str(job["threads"])
    if job.get("threads"):
        env["QWEN3TUI_THREADS"] = str(job["threads"])
    busy = job.get("busy_cores", 0) if name != "bandwidth" else 0
    _say(f"running {tag}" + (f" beside {busy} spinning process(es)" if busy else "") + " ...")
    t0 = time.perf_counter()
    with spinning(busy):
        # Worker chatter (warnings, progress) goes to stderr; stdout stays the report.
        proc = subprocess.run(
            [sys.executable, str(HERE / script), str(job_file), str(result_file)],
            env=env,
            stdout=sys.stderr,
            stderr=sys.stderr,
        )
    _say(f"{tag} done in {time.perf_counter() - t0:.1f} s")
    if result_file.exists():
        return json.loads(result_file.read_text())
    return {"error": f"worker exited with status {proc.returncode} and no result (killed?)"}


@contextlib.contextmanager
def spinning(count: int) -> Iterator[None]:
    """`count` processes that keep a core busy each (as `yes > /dev/null` does) meanwhile."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def _say(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


# -- checkpoint and prompts ----------------------------------------------------------------


def ensure_checkpoint(wanted: Path | None, shared: Path | None, dtype: str) -> Path:
    """A complete checkpoint dir: `wanted` (or the default) if complete, else built there."""
    target = (wanted or DEFAULT_CHECKPOINT).expanduser().resolve()
    if checkpoint_complete(target):
        return target
    if wanted is not None and target.exists() and any(target.iterdir()):
        raise BenchError(
            f"{target} is not a complete checkpoint (config.json and every weight file)."
            " Point --checkpoint at one, or at an empty or new dir to build one."
        )
    source = find_shared_dir(shared)
    _say(f"building a random Qwen3-1.7B-shaped checkpoint in {target} (a few minutes) ...")
    import torch

    from qwen3tui.engine.random_checkpoint import write_random_checkpoint

    config = json.loads((source / "config.json").read_text())
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    write_random_checkpoint(
        partial,
        config=config,
        tokenizer_dir=source,
        dtype=getattr(torch, dtype),
        shards=2,
    )
    if target.exists():
        target.rmdir()  # empty (checked above)
    partial.rename(target)  # an interrupted build is never mistaken for a complete one
    return target


def checkpoint_complete(path: Path) -> bool:
    if not (path / "config.json").is_file() or not (path / "tokenizer.json").is_file():
        return False
    index = path / "model.safetensors.index.json"
    if index.is_file():
        files = set(json.loads(index.read_text())["weight_map"].values())
        return all((path / f).is_file() for f in files)
    return (path / "model.safetensors").is_file()


def find_shared_dir(given: Path | None) -> Path:
    candidates = [given] if given else []
    if not given:
        env = os.environ.get("QWEN3TUI_SHARED_DIR")
        candidates += [Path(env)] if env else []
        candidates += [REPO.parent / "shared" / "qwen3-1.7b", REPO / "shared" / "qwen3-1.7b"]
    for c in candidates:
        if (c / "config.json").is_file() and (c / "tokenizer.json").is_file():
            return c
    tried = ", ".join(str(c) for c in candidates)
    raise BenchError(
        f"no dir with the real Qwen3-1.7B config.json and tokenizer.json (tried {tried})."
        " Pass --shared DIR, set QWEN3TUI_SHARED_DIR, or --checkpoint an existing checkpoint."
    )


def parameter_count(config: dict[str, Any]) -> int:
    """Parameters of the checkpoint's layout; a tied lm_head reads the embedding, counted once."""
    from qwen3tui.engine.random_checkpoint import tensor_shapes

    total = 0
    for shape in tensor_shapes(config).values():
        n = 1
        for d in shape:
            n *= d
        total += n
    return total


class Prompts:
    """Exact-length prompts: real text tokenized and repeated, rotated by an offset."""

    def __init__(self, checkpoint: Path) -> None:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
        self.base = tok.encode(PROMPT_TEXT, add_special_tokens=False).ids

    def ids(self, n: int, offset: int = 0) -> list[int]:
        reps = (n + offset) // len(self.base) + 1
        return (self.base * reps)[offset : offset + n]


def _layout(config: dict[str, Any]) -> str:
    return (
        f"{config['num_hidden_layers']} layers, hidden {config['hidden_size']},"
        f" vocab {config['vocab_size']}"
        + (", tied embeddings" if config.get("tie_word_embeddings", True) else "")
    )


def _round_up(n: int, step: int = 256) -> int:
    return -(-n // step) * step


def _warm_page_cache(ckpt: Path) -> None:
    """Read the weight files once so that neither engine's load time pays for a cold disk."""
    for f in sorted(ckpt.glob("*.safetensors")):
        with open(f, "rb") as fh:
            while fh.read(64 * 2**20):
                pass


if __name__ == "__main__":
    sys.exit(main())
