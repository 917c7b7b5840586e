"""Where a CUDA prefill's time goes: the prefill graph's replay time and its kernels.

A development tool, not a test: on a random Qwen3-shaped model built on the GPU, for each
prompt length, the engine's prefill graph (`decode_step.PrefillGraph`, what a reply's first
chunk replays), of the plain modules and then of fast_prefill's kernels, is timed (median of
CUDA-event timings over replays), then one replay is profiled: GPU time by kernel, largest
first, and how many launches.

    python benchmarks/profile_prefill.py --config DIR/config.json [--lengths 128 2048]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tune_fast_decode import random_model  # noqa: E402

from qwen3tui.engine.config import Qwen3Config  # noqa: E402
from qwen3tui.engine.decode_step import PrefillGraph  # noqa: E402
from qwen3tui.engine.kv_cache import KVCache  # noqa: E402


def replay_ms(prefill: PrefillGraph, chunk: list[int], rounds: int = 20) -> float:
    times = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        prefill(chunk, 0)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def kernel_table(prefill: PrefillGraph, chunk: list[int], top: int) -> list[tuple[str, float, int]]:
    """(kernel name, µs, launches) for one replay, largest first."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        prefill(chunk, 0)
        torch.cuda.synchronize()
    total: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for event in prof.events():
        if event.device_type.name != "CUDA":
            continue
        total[event.name] += event.device_time
        count[event.name] += 1
    rows = sorted(total, key=total.get, reverse=True)
    return [(name, total[name], count[name]) for name in rows[:top]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 2048])
    parser.add_argument("--top", type=int, default=14)
    args = parser.parse_args()
    config = Qwen3Config.from_dict(json.loads(args.config.read_text()))
    model = random_model(config, torch.bfloat16, 4096)
    cache = KVCache(config, 4096, torch.device("cuda"), torch.bfloat16)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    with torch.inference_mode():
        for n, fast in ((n, fast) for n in args.lengths for fast in (False, True)):
            chunk = torch.randint(0, config.vocab_size, (n,)).tolist()
            prefill = PrefillGraph(model, cache, n, fast=fast)
            prefill(chunk, 0)  # captures
            ms = replay_ms(prefill, chunk)
            kind = "fast_prefill's kernels" if fast else "plain modules"
            rate = f"{n / ms * 1e3:.0f} tok/s"
            print(f"\n## prefill of {n} tokens, {kind}: graph replay {ms:.2f} ms ({rate})")
            rows = kernel_table(prefill, chunk, args.top)
            everything = kernel_table(prefill, chunk, 10**6)
            launches = sum(c for _, _, c in everything)
            busy = sum(t for _, t, _ in everything) / 1e3
            print(f"{launches} kernels, {busy:.2f} ms of kernel time")
            print("| kernel | µs | launches |\n|---|---:|---:|")
            for name, us, c in rows:
                print(f"| {name[:90]} | {us:.0f} | {c} |")
            del prefill
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
