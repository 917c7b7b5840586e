"""CPU decode steps through the decoder (engine/cpu_decode.py) against the reference modules.

Each format is loaded once; its steps alternate between CpuDecoder and the model's own forward
(the same projection modules and weights, PyTorch's norms, RoPE, SDPA and adds between them),
a few steps each per round, so both see the same moments of a shared machine. Reported per
format: median and best step time of each and their ratio.

    python benchmarks/bench_cpu_decoder.py [--formats none,int8,int4] [--rounds 10]
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    p.add_argument("--formats", default="none,int8,int4")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--steps", type=int, default=5, help="steps per format and path per round")
    args = p.parse_args()

    import torch

    from qwen3tui.engine import cpu_decode_ops, load_engine

    if cpu_decode_ops.load() is None:
        sys.exit(f"no decode ops kernel here: {cpu_decode_ops.why_unavailable()}")
    engines = {
        f: load_engine(
            str(args.checkpoint),
            device="cpu",
            dtype="bfloat16",
            context_length=1024,
            quantize=None if f == "none" else f,
        )  # fmt: skip
        for f in args.formats.split(",")
    }
    times = {(f, path): [] for f in engines for path in ("decoder", "modules")}
    prompt = torch.arange(1000, 1128).view(1, -1)
    with torch.inference_mode():
        for eng in engines.values():
            if eng.step.decoder is None:
                sys.exit("the decoder does not take this model here")
            eng.model(prompt, 0, eng.cache)
        pos = prompt.shape[1]
        for r in range(args.rounds):
            for f, eng in engines.items():
                paths = ("decoder", "modules") if r % 2 == 0 else ("modules", "decoder")
                for path in paths:
                    for i in range(args.steps):
                        t0 = time.perf_counter()
                        if path == "decoder":
                            eng.step.decoder(200 + i, pos + i)
                        else:
                            eng.model(torch.tensor([[200 + i]]), pos + i, eng.cache)
                        times[f, path].append(time.perf_counter() - t0)
            pos += args.steps
    print(
        f"threads {torch.get_num_threads()}, {args.rounds} rounds x {args.steps} steps per path;"
        f" cached positions {prompt.shape[1]}-{pos}"
    )
    for f in engines:
        fast, slow = statistics.median(times[f, "decoder"]), statistics.median(times[f, "modules"])
        best_fast, best_slow = min(times[f, "decoder"]), min(times[f, "modules"])
        print(
            f"{f:5s} modules {slow * 1e3:6.1f} ms median ({best_slow * 1e3:5.1f} best), "
            f"decoder {fast * 1e3:6.1f} ms ({best_fast * 1e3:5.1f}): x{slow / fast:.2f} "
            f"(best x{best_slow / best_fast:.2f}), {1 / fast:.1f} tok/s"
        )


if __name__ == "__main__":
    main()
