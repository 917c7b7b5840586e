"""Tune and time CUDA's Triton decode step (`qwen3tui/engine/fast_decode.py`) on a GPU.

A development tool, not a test: on a random Qwen3-shaped model built on the GPU (no
checkpoint needed), it
1. checks the fast step's logits against the plain step's once (bf16);
2. sweeps the block shapes of each projection's kernel: every layer's weights in one CUDA
   graph, so the time per launch includes the gaps between kernels as in a real step;
3. times whole decode steps from CUDA graphs (plain kernels, fast step with and without
   programmatic dependent launch, the tuned shapes) at a
   short and a long cache window;
4. profiles the tuned fast step: GPU time per token by kernel.

With --fp8 the layer projections are quantized to FP8 blocks (as `--quantize fp8` does)
after a bf16 step is built, so the whole-step table has the bf16 step beside the FP8 one.

    python benchmarks/tune_fast_decode.py --config DIR/config.json [--long 16000] [--fp8]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qwen3tui.engine.config import Qwen3Config  # noqa: E402
from qwen3tui.engine.decode_step import capture_graph  # noqa: E402
from qwen3tui.engine.fast_decode import (  # noqa: E402
    AttentionShape,
    FastDecoder,
    GemvShape,
    attention_splits,
)
from qwen3tui.engine.fp8_linear import Fp8Linear  # noqa: E402
from qwen3tui.engine.kv_cache import KVCache  # noqa: E402
from qwen3tui.engine.model import Qwen3, layer_projections  # noqa: E402

ATTENTION_SHAPES = [
    AttentionShape(split_min, max_splits, block_t, warps)
    for split_min, max_splits, block_t, warps in (
        (64, 64, 64, 4),
        (128, 64, 64, 4),
        (256, 64, 64, 4),
        (512, 64, 64, 4),
        (64, 64, 32, 4),
        (32, 64, 32, 4),
        (64, 128, 64, 4),
        (128, 128, 64, 4),
        (64, 64, 64, 8),
        (256, 64, 128, 8),
        (512, 64, 128, 8),
        (128, 128, 128, 8),
    )
]


def random_model(config: Qwen3Config, dtype: torch.dtype, positions: int) -> Qwen3:
    torch.manual_seed(0)
    with torch.device("meta"):
        model = Qwen3(config, positions)
    # Allocated once, in the compute dtype: a Qwen3-30B-A3B-shaped model is 61 GB in bf16.
    model.to(dtype).to_empty(device="cuda")
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.requires_grad_(False)
            if name.endswith("norm.weight"):
                p.uniform_(0.8, 1.2)
            else:
                p.normal_(0, 0.02)
    model.setup_rope(torch.device("cuda"), dtype)
    for layer in model.layers:
        layer.matmul_attention = True
        layer.flash = dtype != torch.float32
    return model.eval()


def time_graph(run, replays: int = 100, rounds: int = 5) -> float:
    """Median seconds per replay of `run` captured as a CUDA graph."""
    graph, _ = capture_graph(run, None, warm_up=True)
    for _ in range(5):
        graph.replay()
    times = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(replays):
            graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / replays)
    del graph
    return statistics.median(times)


# Extra FP8 candidates per math of triton_kernels.gemv (rows, cols, warps), beside the "f32"
# shapes. f16 converts and multiplies two weights an instruction, so it can afford more
# weights a thread.
FP8_MATH_SHAPES = {
    "f16": ((8, 1024, 4), (8, 2048, 8), (16, 1024, 8), (16, 512, 4), (16, 256, 8)),
}


def shape_candidates(
    rows: int, cols: int, swiglu: bool, fp8: bool = False, maths: tuple[str, ...] = ("f32",)
) -> list[GemvShape]:
    """Block shapes to time; with `fp8`, for each FP8 math in `maths`."""
    out = []
    if not fp8 or "f32" in maths:
        for block_rows, block_cols, warps in itertools.product(
            (1, 2, 4, 8, 16), (256, 512, 1024, 2048, 4096), (4, 8)
        ):
            # 16 to 128 bytes of weights per thread and tile
            per_thread = block_rows * block_cols * (2 if swiglu else 1) / (32 * warps)
            per_thread_bytes = per_thread * (1 if fp8 else 2)
            if block_cols > cols or not 16 <= per_thread_bytes <= 128:
                continue
            if fp8 and block_rows < 4:
                continue
            out.append(GemvShape(rows, cols, block_rows, block_cols, warps))
            if cols >= 2 * block_cols:  # two tiles fetched before the wait
                out.append(GemvShape(rows, cols, block_rows, block_cols, warps, depth=2))
    for math in maths if fp8 else ():
        for block_rows, block_cols, warps in FP8_MATH_SHAPES.get(math, ()):
            per_thread_bytes = block_rows * block_cols * (2 if swiglu else 1) / (32 * warps)
            if block_cols <= cols and per_thread_bytes <= 128:
                out.append(GemvShape(rows, cols, block_rows, block_cols, warps, fp8_math=math))
    return out


def sweep(
    dec: FastDecoder, name: str, layers: int, maths: tuple[str, ...] = ("f32",)
) -> list[tuple[float, GemvShape]]:
    base = dec.shapes[name]
    fp8 = name in dec.layers[0].scales
    results = []
    for shape in shape_candidates(base.rows, base.cols, name == "gate_up", fp8, maths):
        dec.shapes[name] = shape

        def run(dec=dec):
            for layer in dec.layers[:layers] if name != "head" else [None]:
                s = layer.scales.get(name) if layer is not None else None
                if name == "qkv":
                    dec.project("qkv", layer.qkv, dec.x, dec.qkv, norm=layer.norm, fp8=s)
                elif name == "o":
                    dec.project("o", layer.o, dec.attended, dec.x, residual=True, fp8=s)
                elif name == "gate_up":
                    dec.project(
                        "gate_up", layer.gate_up, dec.x, dec.act, norm=layer.post_norm, fp8=s
                    )
                elif name == "down":
                    dec.project("down", layer.down, dec.act, dec.x, residual=True, fp8=s)
                else:
                    dec.project("head", dec.head, dec.x, dec.logits, norm=dec.final_norm)
            return dec.x

        try:
            dec.x.normal_()
            dec.attended.normal_()
            dec.act.normal_()
            seconds = time_graph(run, replays=50, rounds=3)
        except Exception as err:  # a shape the compiler rejects: skip it
            print(f"  {name} {shape}: {type(err).__name__}", file=sys.stderr)
            continue
        per = seconds / (1 if name == "head" else layers)
        results.append((per, shape))
    dec.shapes[name] = base
    return sorted(results, key=lambda r: r[0])


def step_sweep(
    model: Qwen3,
    cache: KVCache,
    token: torch.Tensor,
    pos: torch.Tensor,
    names: list[str],
    maths: tuple[str, ...],
    seconds: float,
) -> tuple[dict[str, GemvShape], float, float]:
    """Block shapes chosen by the whole step's time (window 512), one projection at a time
    (coordinate descent), others held: a projection's best shape depends on the kernel
    before it (after the latency-bound attention, o's programs have time to fetch all their
    weights before they wait; after a streaming GEMV they do not), which `sweep`, timing 28
    launches of one projection, cannot see. Returns (shapes, default step s, tuned step s)."""
    deadline = time.time() + seconds
    start = FastDecoder(model, cache, pdl=True)

    def step(shapes: dict[str, GemvShape]) -> float:
        dec = FastDecoder(model, cache, pdl=True, shapes=shapes)
        return time_graph(lambda: dec(token, pos, 512), replays=50, rounds=3)

    pos.fill_(300)
    chosen: dict[str, GemvShape] = {}
    default = best = step(chosen)
    for name in names:
        base = start.shapes[name]
        fp8 = name in start.layers[0].scales
        for shape in shape_candidates(base.rows, base.cols, name == "gate_up", fp8, maths):
            if time.time() > deadline:
                print(f"step sweep: time is up at {name}", flush=True)
                break
            if shape == base:
                continue
            try:
                t = step({**chosen, name: shape})
            except Exception as err:  # a shape the compiler rejects: skip it
                print(f"  {name} {shape}: {type(err).__name__}", file=sys.stderr)
                continue
            print(
                f"  {name} rows {shape.block_rows} cols {shape.block_cols} warps {shape.warps}"
                f" depth {shape.depth} math {shape.fp8_math}: {t * 1e3:.3f} ms"
                f" (best {best * 1e3:.3f})",
                file=sys.stderr,
            )
            if t < best * 0.997:  # past the replay-to-replay noise
                best, chosen[name] = t, shape
        if name in chosen:
            c = chosen[name]
            print(
                f"step sweep: {name} -> rows {c.block_rows} cols {c.block_cols} warps {c.warps}"
                f" depth {c.depth} math {c.fp8_math}: step {best * 1e3:.3f} ms",
                flush=True,
            )
    # Again, alternating, so drift between the first and last measurements does not count.
    pairs = [(step({}), step(chosen)) for _ in range(3)]
    default = statistics.median(a for a, _ in pairs)
    best = statistics.median(b for _, b in pairs)
    return chosen, default, best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a Qwen3 config.json")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--long", type=int, default=16000, help="position of the long step")
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--attention-sweep", action="store_true", help="time AttentionShapes")
    parser.add_argument("--out", default=None, help="JSON of every number")
    parser.add_argument("--fp8", action="store_true", help="FP8 projections (bf16 step beside)")
    parser.add_argument("--sweep", default="qkv,o,gate_up,down,head", help="projections to sweep")
    parser.add_argument(
        "--math", default="f32,f16", help="FP8 maths to sweep (triton_kernels.gemv)"
    )
    parser.add_argument(
        "--step-sweep",
        type=float,
        default=0,
        metavar="SECONDS",
        help="choose the --sweep projections' shapes by whole-step time instead (this long)",
    )
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    config = Qwen3Config.from_dict(json.loads(Path(args.config).read_text()))
    positions = args.long + 512
    model = random_model(config, dtype, positions)
    cache = KVCache(config, positions, torch.device("cuda"), dtype)
    weight_bytes = sum(
        p.numel() * p.element_size() for n, p in model.named_parameters() if "embed" not in n
    ) + model.output_weight().numel() * model.output_weight().element_size() * (
        1 if config.tie_word_embeddings else 0
    )
    print(f"{torch.cuda.get_device_name()}, weights read per token {weight_bytes / 1e9:.3f} GB")
    report: dict = {"device": torch.cuda.get_device_name(), "weight_bytes": weight_bytes}

    token = torch.tensor([[1234]], device="cuda")
    pos = torch.tensor([300], device="cuda")
    # 1. One check: fast step against the plain step after a 300-token prefill.
    ids = torch.randint(0, config.vocab_size, (1, 300), device="cuda")
    with torch.inference_mode():
        model(ids, 0, cache)
        plain = model.decode_step(token, pos, cache, 512)[0, -1].float()
        dec = FastDecoder(model, cache)
        fast = dec(token, pos, 512).float()
    rel = ((fast - plain).abs().max() / plain.abs().max()).item()
    print(f"fast vs plain logits, max rel diff {rel:.2e} (bf16 rounding: ~1e-2)")
    report["check_rel_diff"] = rel
    bf16_step = None
    if args.fp8:
        bf16_step = FastDecoder(model, cache, pdl=True)  # keeps the bf16 weights alive
        with torch.no_grad():
            for owner, name in layer_projections(model):
                setattr(owner, name, Fp8Linear.quantized(getattr(owner, name).weight))
        fp8_bytes = (
            sum(
                m.weight.numel() + m.scale.numel() * 4
                for m in model.modules()
                if isinstance(m, Fp8Linear)
            )
            + sum(
                p.numel() * p.element_size()
                for n, p in model.named_parameters()
                if "embed" not in n
            )
            + model.output_weight().numel() * model.output_weight().element_size()
        )
        print(f"FP8 projections: weights read per token {fp8_bytes / 1e9:.3f} GB")
        report["bf16_weight_bytes"], weight_bytes = weight_bytes, fp8_bytes
        report["weight_bytes"] = weight_bytes
        with torch.inference_mode():
            pos.fill_(300)
            plain = model.decode_step(token, pos, cache, 512)[0, -1].float()
            pos.fill_(300)
            fast = FastDecoder(model, cache)(token, pos, 512).float()
        rel = ((fast - plain).abs().max() / plain.abs().max()).item()
        print(f"FP8: fast vs plain (dequantizing) logits, max rel diff {rel:.2e}")
        report["fp8_check_rel_diff"] = rel
        dec = FastDecoder(model, cache)

    tuned = {}
    with torch.inference_mode():
        if args.step_sweep:
            names = args.sweep.split(",")
            tuned, default, best = step_sweep(
                model, cache, token, pos, names, tuple(args.math.split(",")), args.step_sweep
            )
            print(
                f"step sweep: default shapes {default * 1e3:.3f} ms, chosen {best * 1e3:.3f} ms"
                f" ({default / best:.3f}x): {tuned}",
                flush=True,
            )
            report["step_sweep"] = {
                "default_s": default,
                "chosen_s": best,
                "shapes": {n: s.__dict__ for n, s in tuned.items()},
            }
        elif not args.no_sweep:
            for name in args.sweep.split(","):
                t0 = time.time()
                maths = tuple(args.math.split(","))
                results = sweep(dec, name, config.num_hidden_layers, maths)
                best = results[0]
                s = best[1]
                rows = s.rows * (2 if name == "gate_up" else 1)
                bits = 8 if name in dec.layers[0].scales else torch.finfo(dtype).bits
                nbytes = rows * s.cols * bits / 8
                print(
                    f"{name:8s} {rows}x{s.cols}: best {best[0] * 1e6:6.2f} us"
                    f" ({nbytes / best[0] / 1e12:.2f} TB/s) with rows {s.block_rows} cols"
                    f" {s.block_cols} warps {s.warps} depth {s.depth} math {s.fp8_math}; default"
                    f" {dec.shapes[name].block_rows}/{dec.shapes[name].block_cols}/"
                    f"{dec.shapes[name].warps}; swept {len(results)} in {time.time() - t0:.0f} s"
                )
                for per, shape in results[:5]:
                    print(f"    {per * 1e6:6.2f} us  {shape}")
                if bits == 8:  # the best of each FP8 math: which math wins, and by how much
                    for math in maths:
                        ranked = [(per, sh) for per, sh in results if sh.fp8_math == math]
                        if ranked:
                            per, sh = ranked[0]
                            print(
                                f"    best {math:5s} {per * 1e6:6.2f} us"
                                f" ({nbytes / per / 1e12:.2f} TB/s)  {sh}"
                            )
                tuned[name] = s
                report.setdefault("sweep", {})[name] = [
                    (per, shape.__dict__) for per, shape in results
                ]

        # 3. Whole steps.
        fast_pdl = FastDecoder(model, cache, pdl=True)
        fast_no = FastDecoder(model, cache, pdl=False)
        fast_tuned = FastDecoder(model, cache, pdl=True, shapes=tuned) if tuned else None
        steps = {}
        for label, window, at in (("short", 512, 300), ("long", positions, args.long)):
            pos.fill_(at)
            variants = {
                "plain graphs": lambda w=window: model.decode_step(token, pos, cache, w),
                "fast, PDL": lambda w=window: fast_pdl(token, pos, w),
                "fast, no PDL": lambda w=window: fast_no(token, pos, w),
            }
            if args.fp8:  # the plain FP8 step dequantizes every weight: ~20 ms, not of interest
                del variants["plain graphs"], variants["fast, no PDL"]
            if fast_tuned is not None:
                variants["fast, PDL, tuned"] = lambda w=window: fast_tuned(token, pos, w)
            if bf16_step is not None:
                variants["bf16 fast, PDL"] = lambda w=window: bf16_step(token, pos, w)
            if args.attention_sweep:
                for a in ATTENTION_SHAPES:
                    dec_a = FastDecoder(model, cache, pdl=True, shapes=tuned, attention=a)
                    n, length = attention_splits(window, a)
                    name = (
                        f"split>={a.split_min} <={a.max_splits} tile {a.block_t} w{a.warps}"
                        f" ({n}x{length})"
                    )
                    variants[name] = lambda w=window, d=dec_a: d(token, pos, w)
            for name, run in variants.items():
                try:
                    seconds = time_graph(run)
                except Exception as err:
                    print(f"{label}: {name} failed: {type(err).__name__}: {err}")
                    continue
                steps[f"{label}/{name}"] = seconds
                print(
                    f"{label} window ({window}, pos {at}): {name:20s} {seconds * 1e3:.3f} ms"
                    f" = {1 / seconds:.0f} tok/s ({weight_bytes / seconds / 1e12:.2f} TB/s)",
                    flush=True,
                )
        report["steps"] = steps

        # 4. Profile. With PDL kernels overlap (each waits inside for the one before), so the
        # time per kernel is only meaningful without it.
        from torch.profiler import ProfilerActivity, profile

        pos.fill_(300)
        for pdl in (False, True):
            dec = FastDecoder(model, cache, pdl=pdl, shapes=tuned)
            graph, _ = capture_graph(lambda d=dec: d(token, pos, 512), None, warm_up=True)
            graph.replay()
            torch.cuda.synchronize()
            n = 20
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(n):
                    graph.replay()
                torch.cuda.synchronize()
            kernels: dict[str, list[float]] = {}
            for e in prof.events():
                if e.device_type.name == "CUDA":
                    kernels.setdefault(e.name[:60], []).append(e.time_range.elapsed_us())
            total = sum(sum(v) for v in kernels.values()) / n
            print(f"profile (PDL {pdl}): {total:.0f} us of kernels per token, window 512")
            for name, times in sorted(kernels.items(), key=lambda kv: -sum(kv[1])):
                per_token = sum(times) / n
                count = len(times) / n
                print(
                    f"  {per_token:7.1f} us/token {count:5.0f} launches"
                    f" {per_token / count:6.2f} us each  {name}"
                )
            report[f"profile_us_pdl_{pdl}"] = {k: sum(v) / n for k, v in kernels.items()}
            del graph
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
