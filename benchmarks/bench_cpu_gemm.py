"""bf16 prefill products alone, on Qwen3-1.7B's layer shapes: the C GEMM against PyTorch.

A prefill chunk multiplies M rows by each projection (qkv 4096x2048, o 2048x2048, gate_up
12288x2048, down 2048x6144). For each shape and row count the candidates take turns within each
round, on the same bf16 weight and input: the C GEMM of bf16_cpu_gemm (plain weight), F.linear
(plain weight: what runs without the kernel where oneDNN has no bf16) and, where oneDNN has
bf16, `_linear_pointwise` on the weight pre-packed as PackedLinear packs it. Medians over
rounds give GFLOP/s and each candidate's time against the GEMM's, for one moment of a shared
machine.

    python benchmarks/bench_cpu_gemm.py [--rows 128,512] [--rounds 7] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SHAPES = {"qkv": (4096, 2048), "o": (2048, 2048), "gate_up": (12288, 2048), "down": (2048, 6144)}


def candidates(w):
    import torch
    import torch.nn.functional as F

    from qwen3tui.engine import bf16_cpu_gemm, cpu_linear

    found = {}
    gemm = bf16_cpu_gemm.load()
    if gemm is not None:
        found["C gemm"] = lambda x: gemm.matmul(x, w)
    found["F.linear"] = lambda x: F.linear(x, w)
    if cpu_linear._onednn_available():
        packed = torch.ops.mkldnn._reorder_linear_weight(w, 1)
        found["oneDNN packed"] = lambda x: torch.ops.mkldnn._linear_pointwise(
            x, packed, None, "none", [], ""
        )
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default="128,512", help="rows per product, e.g. 128,512")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()

    import torch

    from qwen3tui.engine import bf16_cpu_gemm

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"threads {torch.get_num_threads()}; C gemm: {bf16_cpu_gemm.why_unavailable() or 'ok'}")
    gen = torch.Generator().manual_seed(0)
    for rows in (int(r) for r in args.rows.split(",")):
        for name, (n, k) in SHAPES.items():
            w = (torch.randn(n, k, generator=gen) * 0.02).bfloat16()
            x = torch.randn(rows, k, generator=gen).bfloat16()
            fns = candidates(w)
            times: dict[str, list[float]] = {c: [] for c in fns}
            with torch.inference_mode():
                for fn in fns.values():
                    fn(x)  # warm-up: first-touch, oneDNN's kernel choice
                for _ in range(args.rounds):
                    for c, fn in fns.items():
                        t = time.perf_counter()
                        fn(x)
                        times[c].append(time.perf_counter() - t)
            flop = 2 * rows * n * k
            med = {c: statistics.median(v) for c, v in times.items()}
            base = med.get("C gemm")
            cells = [
                f"{c} {flop / t / 1e9:6.1f} GFLOP/s"
                + (f" (x{t / base:.2f} the C gemm's time)" if base and c != "C gemm" else "")
                for c, t in med.items()
            ]
            print(f"M={rows:4d} {name:8s} {n}x{k}: " + "; ".join(cells), flush=True)


if __name__ == "__main__":
    main()
