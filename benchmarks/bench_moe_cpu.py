"""CPU decode of a Qwen3-30B-A3B-shaped model in int4, measured on fewer layers and scaled.

The whole model is 61 GB in bf16 (its int4 form about 16 GB), more than a small machine's disk
and memory allow for a benchmark checkpoint. Every layer has the same shapes, though, so a
decode step costs a fixed part (embedding, final norm, output head, sampling) plus the same
time per layer. This writes random checkpoints with the real config cut to each of
`--layers` (e.g. 2 and 6 layers), loads each the way a user would (`load_engine(...,
quantize="int4")`: quantized as loaded), times decode steps of the depths in turn (in one
process, so they share the moments of a busy machine), fits step = fixed + per_layer x layers,
and reports the full depth's step time and model size from the fit.

    python benchmarks/bench_moe_cpu.py --layers 2,6 [--quantize int4] [--rounds 8]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

CONFIG = Path("/work/shared/qwen3-family/Qwen3-30B-A3B.config.json")
BUNDLED = HERE / "configs" / "Qwen3-30B-A3B.config.json"
TOKENIZER = Path("/work/shared/qwen3-1.7b")


def model_bytes(model) -> int:
    """Bytes the model's tensors hold (its size in memory, without the KV cache)."""
    import torch

    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        if t.layout == torch.strided and t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", default="2,6")
    p.add_argument("--quantize", default="int4")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--steps", type=int, default=5, help="steps per depth per round")
    p.add_argument("--work", type=Path, default=Path("/tmp/qwen3tui-moe-cpu"))
    args = p.parse_args()

    import torch

    from qwen3tui.engine import load_engine
    from qwen3tui.engine.random_checkpoint import write_random_checkpoint

    raw = json.loads((CONFIG if CONFIG.exists() else BUNDLED).read_text())
    full_layers = raw["num_hidden_layers"]
    depths = [int(x) for x in args.layers.split(",")]
    engines = {}
    for n in depths:
        cfg = {**raw, "num_hidden_layers": n, "max_window_layers": n}
        path = args.work / f"layers{n}"
        if not (path / "config.json").exists():
            shutil.rmtree(path, ignore_errors=True)
            t0 = time.perf_counter()
            write_random_checkpoint(path, config=cfg, tokenizer_dir=TOKENIZER,
                                    dtype=torch.bfloat16, shards=max(2, n), seed=n)  # fmt: skip
            print(f"wrote {n} layers in {time.perf_counter() - t0:.0f} s", flush=True)
        engines[n] = load_engine(str(path), device="cpu", dtype="bfloat16", context_length=256,
                                 quantize=args.quantize)  # fmt: skip
    # The depths take turns, a few steps each per round: the same moments of a shared machine.
    times: dict[int, list[float]] = {n: [] for n in depths}
    with torch.inference_mode():
        for eng in engines.values():
            for i in range(16):
                eng.step(torch.tensor([1000 + i]), i)
        pos = 16
        for _ in range(args.rounds):
            for n, eng in engines.items():
                for i in range(args.steps):
                    t0 = time.perf_counter()
                    eng.step(torch.tensor([2000 + i]), pos + i)
                    times[n].append(time.perf_counter() - t0)
            pos += args.steps
    rows = []
    for n in depths:
        med, best = statistics.median(times[n]) * 1e3, min(times[n]) * 1e3
        size = model_bytes(engines[n].model)
        rows.append((n, med, best, size))
        print(f"{n} layers: step {med:.1f} ms median, {best:.1f} best; model {size / 1e9:.2f} GB")
    if len(rows) >= 2:
        (n0, m0, b0, s0), (n1, m1, b1, s1) = rows[0], rows[-1]
        per, per_best = (m1 - m0) / (n1 - n0), (b1 - b0) / (n1 - n0)
        fixed, fixed_best = m0 - per * n0, b0 - per_best * n0
        full, full_best = fixed + per * full_layers, fixed_best + per_best * full_layers
        size = s0 + (s1 - s0) / (n1 - n0) * (full_layers - n0)
        print(
            f"fit: {fixed:.1f} ms fixed + {per:.2f} ms per layer (best steps: {fixed_best:.1f} +"
            f" {per_best:.2f}); {full_layers} layers: {full:.0f} ms a step = "
            f"{1e3 / full:.1f} tok/s median ({1e3 / full_best:.1f} best); model {size / 1e9:.1f}"
            " GB in memory"
        )


if __name__ == "__main__":
    main()
