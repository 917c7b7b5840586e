"""The CPU decode kernels alone, on Qwen3-1.7B's layer shapes: GB/s of weights per format.

One decode step of a dense layer runs four one-row products (qkv 4096x2048, o 2048x2048,
gate_up 12288x2048, down 2048x6144). Several layers' worth of random weights (more than the
last-level cache) are built in each format the engine uses on this CPU (bf16: packed for
oneDNN where it has bf16, else the plain weight, both read by the bf16 kernel; int8; int4),
then the formats take turns: each round runs every layer once per format, and the median
over rounds gives ms per layer and GB/s of weight bytes read (codes plus scales). The
streaming-read probe of `_bench_bandwidth.py` (a float32 sum over a buffer far larger than
the caches) runs in the same rounds, so the ratios hold for one moment of a shared machine.

    python benchmarks/bench_cpu_kernels.py [--layers 8] [--rounds 15] [--threads N]
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

# (out, in) of one Qwen3-1.7B layer's projections, as the engine fuses them
SHAPES = {"qkv": (4096, 2048), "o": (2048, 2048), "gate_up": (12288, 2048), "down": (2048, 6144)}


def weight_bytes(module) -> int:
    import torch

    total = 0
    for t in list(module.buffers()) + list(module.parameters()):
        if isinstance(t, torch.Tensor) and t.layout == torch.strided:
            total += t.numel() * t.element_size()
    return total


def build(fmt: str, layers: int, seed: int = 0) -> tuple[list[dict], int]:
    import torch

    from qwen3tui.engine import bf16_cpu_kernel, cpu_linear, quantize

    gen = torch.Generator().manual_seed(seed)
    onednn = cpu_linear._onednn_available()
    out, total = [], 0
    for _ in range(layers):
        mods = {}
        for name, (n, k) in SHAPES.items():
            w = (torch.randn(n, k, generator=gen) * 0.02).bfloat16()
            if fmt == "bf16":
                # as pack_linears: oneDNN's packed buffer where it has bf16, else the plain weight
                kernel = bf16_cpu_kernel.load()
                if onednn:
                    m = cpu_linear.PackedLinear(w, kernel)
                else:
                    m = cpu_linear.GemvLinear(w, kernel)
                total += n * k * 2  # oneDNN's packed buffer is not a strided tensor
            elif fmt == "int8":
                m = quantize.Int8Linear(w)
                total += weight_bytes(m) - m.scale.numel() * m.scale.element_size()
            else:
                m = quantize.Int4Linear(w)
                total += weight_bytes(m)
            mods[name] = m
        out.append(mods)
    return out, total


def run_layers(layers: list[dict], xs: dict) -> None:
    for mods in layers:
        for name, m in mods.items():
            m(xs[name])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=8, help="layers per format (default 8)")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--threads", type=int, default=0, help="0: torch's default")
    p.add_argument("--formats", default="bf16,int8,int4")
    args = p.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    formats = args.formats.split(",")
    built = {f: build(f, args.layers) for f in formats}
    xs = {name: torch.randn(1, k).bfloat16() for name, (n, k) in SHAPES.items()}
    probe = torch.ones(256 * 2**20, dtype=torch.float32)  # 1 GiB
    probe.sum()
    for f in formats:
        run_layers(built[f][0], xs)  # warm: first-touch page faults, kernel builds
    times: dict[str, list[float]] = {f: [] for f in [*formats, "read"]}
    for _ in range(args.rounds):
        for f in formats:
            t0 = time.perf_counter()
            run_layers(built[f][0], xs)
            times[f].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        probe.sum()
        times["read"].append(time.perf_counter() - t0)
    read_gbs = probe.numel() * 4 / statistics.median(times["read"]) / 1e9
    spread = [probe.numel() * 4 / t / 1e9 for t in times["read"]]
    print(
        f"threads {torch.get_num_threads()}, {args.layers} layers, {args.rounds} rounds; "
        f"streaming read {read_gbs:.1f} GB/s (median; {min(spread):.1f}-{max(spread):.1f})"
    )
    base = None
    for f in formats:
        med = statistics.median(times[f])
        gbs = built[f][1] / med / 1e9
        per_layer = med / args.layers * 1e3
        base = base or per_layer
        print(
            f"{f:5s} {per_layer:6.3f} ms/layer  {gbs:5.1f} GB/s  {gbs / read_gbs:4.0%} of read"
            f"  speed x{base / per_layer:.2f} of {formats[0]}"
            f"  (min {min(times[f]) / args.layers * 1e3:.3f})"
        )


if __name__ == "__main__":
    main()
