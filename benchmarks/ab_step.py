"""Whole CUDA decode steps of this tree's kernels against another revision's, in one process.

Kernel changes of a few percent are below the spread between GPU calls (the same step
measures 1.141-1.147 ms on one H200 and 1.111-1.116 on the next), so they are judged in one
process: the revision's `fast_decode`, `triton_kernels` and `triton_moe` are loaded beside
this tree's (from `git show`), both decoders built over the same random model and cache, and
their graph replays timed in turn, round after round; the table gives the medians, the ratio
to the base, and each variant's largest logit difference from the base (bf16 rounding-sized
unless the products changed).

    python benchmarks/ab_step.py --config CONFIG.json [--base HEAD] [--fp8]
        [--variant 'o 1={"o": {"depth": 1}}' ...]

A variant is this tree's decoder with GemvShape fields replaced per projection (JSON:
projection -> fields; "attention" -> AttentionShape fields). The base revision's decoder must
take this tree's model and cache (a revision of the same layout, as kernel experiments are).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from qwen3tui.engine.config import Qwen3Config  # noqa: E402
from qwen3tui.engine.fast_decode import FastDecoder  # noqa: E402
from qwen3tui.engine.fp8_linear import Fp8Linear  # noqa: E402
from qwen3tui.engine.kv_cache import KVCache  # noqa: E402
from qwen3tui.engine.model import layer_projections  # noqa: E402

KERNEL_MODULES = ("triton_kernels", "triton_moe", "fast_decode")


def load_revision(rev: str, prefix: str = "base_") -> ModuleType:
    """`rev`'s fast_decode module, its kernel modules loaded beside this tree's under
    `qwen3tui.engine.<prefix><name>` (imports between the three rewritten to match)."""
    import qwen3tui.engine as package

    folder = Path(tempfile.mkdtemp(prefix="qwen3tui-ab-"))
    loaded: dict[str, ModuleType] = {}
    for name in KERNEL_MODULES:
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:qwen3tui/engine/{name}.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for other in KERNEL_MODULES:
            source = source.replace(
                f"from . import {other} as", f"from . import {prefix}{other} as"
            )
            source = source.replace(f"from .{other} import", f"from .{prefix}{other} import")
        path = folder / f"{prefix}{name}.py"  # Triton reads a kernel's source from its file
        path.write_text(source)
        full = f"qwen3tui.engine.{prefix}{name}"
        spec = importlib.util.spec_from_file_location(full, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module
        setattr(package, f"{prefix}{name}", module)
        spec.loader.exec_module(module)
        loaded[name] = module
    return loaded["fast_decode"]


def with_shapes(decoder: FastDecoder, fields: dict[str, dict]) -> FastDecoder:
    if "attention" in fields:
        decoder.attention = replace(decoder.attention, **fields["attention"])
    decoder.shapes = {
        name: replace(shape, **fields[name]) if name in fields else shape
        for name, shape in decoder.shapes.items()
    }
    return decoder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a Qwen3 config.json")
    parser.add_argument("--base", default="HEAD", help="the revision to compare against")
    parser.add_argument("--fp8", action="store_true", help="FP8 projections (--quantize fp8)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--window", type=int, default=512, help="cache window of the step")
    parser.add_argument(
        "--variant", action="append", default=[], metavar="NAME=JSON", help="see the docstring"
    )
    args = parser.parse_args()
    from tune_fast_decode import random_model, time_graph

    base = load_revision(args.base)
    config = Qwen3Config.from_dict(json.loads(Path(args.config).read_text()))
    model = random_model(config, torch.bfloat16, args.window + 512)
    if args.fp8:
        with torch.no_grad():
            for owner, name in layer_projections(model):
                setattr(owner, name, Fp8Linear.quantized(getattr(owner, name).weight))
    cache = KVCache(config, args.window + 512, torch.device("cuda"), torch.bfloat16)
    decoders = {
        f"base ({args.base})": base.FastDecoder(model, cache, pdl=True),
        "this tree": FastDecoder(model, cache, pdl=True),
    }
    for spec in args.variant:
        name, fields = spec.split("=", 1)
        decoders[name] = with_shapes(FastDecoder(model, cache, pdl=True), json.loads(fields))
    token = torch.tensor([[1234]], device="cuda")
    pos = torch.tensor([args.window - 212], device="cuda")
    with torch.inference_mode():
        first = next(iter(decoders.values()))
        want = first(token, pos, args.window).float().clone()
        diffs = {}
        for name, dec in decoders.items():
            got = dec(token, pos, args.window).float()
            diffs[name] = ((got - want).abs().max() / want.abs().max()).item()
        times: dict[str, list[float]] = {name: [] for name in decoders}
        for _ in range(args.rounds):  # in turn, so drift between them does not count
            for name, dec in decoders.items():
                times[name].append(time_graph(lambda d=dec: d(token, pos, args.window)))
    base_s = statistics.median(next(iter(times.values())))
    print(f"{torch.cuda.get_device_name()}, {args.config}, window {args.window}, fp8 {args.fp8}")
    print("| decoder | step | tok/s | x base | max rel logit diff to base |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in times.items():
        s = statistics.median(runs)
        print(f"| {name} | {s * 1e3:.4f} ms | {1 / s:.0f} | {base_s / s:.4f} | {diffs[name]:.2e} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
