"""CPU decode steps of one checkpoint in several formats, interleaved in one process.

bench_engine.py runs each engine in its own process, one after another; on a machine shared
with other work the load moves between them, and so do the ratios. Here every format is loaded
at once (`load_engine(..., quantize=...)`) and the formats take turns, a few steps each per
round, with the streaming-read probe of `_bench_bandwidth.py` in every round, so int4 / int8,
int8 / bf16 and each one's share of the read ceiling come from the same moments. Reported per
format: median and best step time, tok/s, and the weight bytes a step reads (the engine's own
tensors: projections, head; the embedding table is only looked up) over the median probe.

    python benchmarks/bench_cpu_decode.py [--formats none,int8,int4] [--rounds 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

CHECKPOINT = HERE / "checkpoints" / "qwen3-1.7b-random"


def _weight_bytes(model) -> int:
    """Bytes of weights a step reads: every tensor once, except the embedding table when the
    head has its own weight (then one row is looked up). bf16 projections live in oneDNN's
    packed buffers, which are no plain tensors, so they are counted from their shapes."""
    import torch

    from qwen3tui.engine.cpu_linear import PackedLinear

    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        if t.layout == torch.strided and t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    table = model.embed_tokens.weight
    head = model.lm_head
    if head is not None and all(
        t.data_ptr() != table.data_ptr() for t in [*head.parameters(), *head.buffers()]
    ):
        total -= table.numel() * table.element_size()
    packed = [m for m in model.modules() if isinstance(m, PackedLinear)]
    return total + sum(m.out_features * m.in_features * 2 for m in packed)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    p.add_argument("--formats", default="none,int8,int4")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--steps", type=int, default=5, help="steps per format per round")
    args = p.parse_args()

    import torch

    from qwen3tui.engine import load_engine

    engines = {}
    for f in args.formats.split(","):
        quantize = None if f == "none" else f
        engines[f] = load_engine(
            str(args.checkpoint), device="cpu", dtype="bfloat16", context_length=1024,
            quantize=quantize,
        )  # fmt: skip
    probe = torch.ones(256 * 2**20, dtype=torch.float32)  # 1 GiB, as _bench_bandwidth
    times: dict[str, list[float]] = {f: [] for f in engines}
    reads: list[float] = []
    pos = 0
    with torch.inference_mode():
        for eng in engines.values():
            for i in range(3):
                eng.step(torch.tensor([100 + i]), i)
        pos = 3
        for _ in range(args.rounds):
            for f, eng in engines.items():
                for i in range(args.steps):
                    t0 = time.perf_counter()
                    eng.step(torch.tensor([200 + i]), pos + i)
                    times[f].append(time.perf_counter() - t0)
            pos += args.steps
            t0 = time.perf_counter()
            probe.sum()
            reads.append(probe.numel() * 4 / (time.perf_counter() - t0) / 1e9)
    read = statistics.median(reads)
    print(
        f"threads {torch.get_num_threads()} (policy at start), {args.rounds} rounds x "
        f"{args.steps} steps; streaming read {read:.1f} GB/s median ({min(reads):.1f}-"
        f"{max(reads):.1f})"
    )
    first = args.formats.split(",")[0]
    base, base_best = statistics.median(times[first]), min(times[first])
    for f, eng in engines.items():
        med, best = statistics.median(times[f]), min(times[f])
        nbytes = _weight_bytes(eng.model)
        print(
            f"{f:5s} step {med * 1e3:6.1f} ms median ({best * 1e3:5.1f} best) = "
            f"{1 / med:5.1f} tok/s; {nbytes / 1e9:.2f} GB a step: {nbytes / med / 1e9:5.1f} GB/s"
            f" = {nbytes / med / 1e9 / read:4.0%} of read; x{base / med:.2f} of {first}"
            f" (best steps: x{base_best / best:.2f})"
        )


if __name__ == "__main__":
    main()
