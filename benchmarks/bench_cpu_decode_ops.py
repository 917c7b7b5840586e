"""CPU decode steps with and without the C ops of cpu_decode_ops (norms, RoPE, attention and
the cache write, residual add + norm, SwiGLU).

Each format is loaded once (`load_engine(..., quantize=...)`, which installs the ops); the
steps then alternate between the installed ops and the reference modules' own code (the
kernel taken off the same modules), a few steps each per round, so before and after come from
the same moments of a shared machine and the same cache lengths. A 128-token prompt is
prefilled first, so attention reads 128 to a few hundred cached positions.

    python benchmarks/bench_cpu_decode_ops.py [--formats none,int8,int4] [--rounds 10]
        [--against reference|per-op]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

CHECKPOINT = HERE / "checkpoints" / "qwen3-1.7b-random"


def _switch(model, on: bool, saved: dict, against: str) -> None:
    """The C ops on, or off for `model`: all of them (against "reference": the reference
    modules' own code), or only the whole-layer ones (against "per-op": FastDecoderLayer and
    FastLayerOutput back to the reference classes, the per-op norms, RoPE and attention kept)."""
    from qwen3tui.engine.cpu_decode_ops import FastDecoderLayer, FastLayerOutput, FastRMSNorm
    from qwen3tui.engine.model import DecoderLayer, LayerOutput

    if against == "per-op":
        for layer in model.layers:
            layer.__class__ = FastDecoderLayer if on else DecoderLayer
            layer.output.__class__ = FastLayerOutput if on else LayerOutput
        return

    for i, m in enumerate(m for m in model.modules() if isinstance(m, FastRMSNorm)):
        saved.setdefault(("norm", i), m.kernel)
        m.kernel = saved[("norm", i)] if on else None
    for i, layer in enumerate(model.layers):
        saved.setdefault(("attn", i), layer.one_query_attention)
        layer.one_query_attention = saved[("attn", i)] if on else None
        saved.setdefault(("rope", i), layer.inputs.kernel)  # a FastAttentionInputs
        layer.inputs.kernel = saved[("rope", i)] if on else None
        saved.setdefault(("output", i), layer.output.kernel)  # a FastLayerOutput
        layer.output.kernel = saved[("output", i)] if on else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    p.add_argument("--formats", default="none,int8,int4")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--steps", type=int, default=5, help="steps per format and mode per round")
    p.add_argument(
        "--against",
        choices=("reference", "per-op"),
        default="reference",
        help="what the C ops are timed against: PyTorch's modules, or the per-op C calls alone",
    )
    args = p.parse_args()

    import torch

    from qwen3tui.engine import cpu_decode_ops, load_engine

    if cpu_decode_ops.load() is None:
        sys.exit(f"no decode ops kernel here: {cpu_decode_ops.why_unavailable()}")
    engines, saved = {}, {}
    for f in args.formats.split(","):
        engines[f] = load_engine(
            str(args.checkpoint), device="cpu", dtype="bfloat16", context_length=1024,
            quantize=None if f == "none" else f,
        )  # fmt: skip
        saved[f] = {}
    times = {(f, on): [] for f in engines for on in (True, False)}
    prompt = torch.arange(1000, 1128).view(1, -1)
    with torch.inference_mode():
        for eng in engines.values():
            eng.model(prompt, 0, eng.cache)
        pos = prompt.shape[1]
        for r in range(args.rounds):
            for f, eng in engines.items():
                for on in (True, False) if r % 2 == 0 else (False, True):
                    _switch(eng.model, on, saved[f], args.against)
                    for i in range(args.steps):
                        t0 = time.perf_counter()
                        eng.step(torch.tensor([200 + i]), pos + i)
                        times[f, on].append(time.perf_counter() - t0)
            pos += args.steps
    print(
        f"against {args.against}; threads {torch.get_num_threads()},"
        f" {args.rounds} rounds x {args.steps} steps per mode;"
        f" cached positions {prompt.shape[1]}-{pos}"
    )
    for f in engines:
        on, off = statistics.median(times[f, True]), statistics.median(times[f, False])
        best_on, best_off = min(times[f, True]), min(times[f, False])
        print(
            f"{f:5s} {args.against} {off * 1e3:6.1f} ms median ({best_off * 1e3:5.1f} best), "
            f"C ops {on * 1e3:6.1f} ms ({best_on * 1e3:5.1f}): {(off - on) * 1e3:+5.1f} ms, "
            f"x{off / on:.2f} (best x{best_off / best_on:.2f})"
        )


if __name__ == "__main__":
    main()
