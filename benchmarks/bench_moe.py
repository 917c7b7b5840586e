"""Decode speed of a Qwen3-30B-A3B-shaped mixture of experts: this engine against transformers.

    python benchmarks/bench_moe.py --device cuda
    python benchmarks/bench_moe.py --device cpu --layers 2 --experts 16 --tokens 8   # a check

The full model is 61 GB in bf16, so nothing is written to disk: random weights are built in
memory on the device, in our engine's layout (experts stacked per layer), and transformers'
`Qwen3MoeForCausalLM` is given views of the very same tensors (its fused expert layout is
ours), so both engines run the same weights with no second copy. Shapes come from the real
config.json (`--config`); `--layers`/`--experts` scale it down for a quick check.

Decode at batch 1 reads every weight a token uses once: attention, the router, the k routed
experts of each layer, the output head, and the KV cache. That many bytes over the device's
measured bandwidth is the ceiling each engine's tok/s is compared with. Rows:
- ours: the engine's decode step (`decode_step.make_step`: CUDA graphs on CUDA), driven the
  way `generate` drives it (next step launched before the host reads the token): "fast" (the
  Triton kernels of fast_decode.py, as the engine runs on CUDA), then graphs of the plain
  modules once per way a decoding token reaches its experts (moe.py): "grouped" (grouped
  matmul from device offsets) and "index" (k experts gathered by device index, then a batched
  matmul); on the CPU the host grouping (a functional check: the CPU packing Engine.load
  adds is not applied);
- transformers: `generate`, greedy, its default experts implementation and cache.
Greedy tokens of the two are compared (bf16: a near-tie may flip late; the step is shown).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

SHARED_CONFIG = Path("/work/shared/qwen3-family/Qwen3-30B-A3B.config.json")
BUNDLED_CONFIG = HERE / "configs" / "Qwen3-30B-A3B.config.json"
DTYPES = ("bfloat16", "float16", "float32")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    p.add_argument("--dtype", choices=DTYPES, default="bfloat16")
    default_config = SHARED_CONFIG if SHARED_CONFIG.exists() else BUNDLED_CONFIG
    p.add_argument("--config", type=Path, default=default_config, help="a qwen3_moe config.json")
    p.add_argument("--layers", type=int, help="use only this many layers (a scaled-down check)")
    p.add_argument("--experts", type=int, help="use only this many experts per layer")
    p.add_argument("--prompt", type=int, default=128, help="prompt tokens before decoding")
    p.add_argument("--tokens", type=int, default=256, help="tokens decoded per run")
    p.add_argument("--repeats", type=int, default=3, help="runs per engine; the best is kept")
    p.add_argument("--check-tokens", type=int, default=32, help="greedy tokens compared")
    p.add_argument("--engines", default="ours,transformers")
    p.add_argument(
        "--expert-shapes",
        nargs="*",
        metavar="RxCxW/RxCxW",
        help="CUDA: a fast row per pair of expert kernel blocks (rows x cols x warps of gate/up"
        " and of down) instead of the defaults, e.g. 16x256x8/4x256x4",
    )
    p.add_argument("--compile-timeout", type=float, default=900.0, help="seconds")
    p.add_argument("--json", type=Path, help="also write every number here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from qwen3tui.engine.config import Qwen3Config

    raw = json.loads(args.config.read_text())
    if args.layers:
        raw["num_hidden_layers"] = args.layers
        raw["mlp_only_layers"] = [i for i in raw.get("mlp_only_layers") or [] if i < args.layers]
    if args.experts:
        raw["num_experts"] = args.experts
        raw["num_experts_per_tok"] = min(raw["num_experts_per_tok"], args.experts)
    config = Qwen3Config.from_dict(raw, str(args.config))
    if not config.is_moe:
        print(f"bench_moe: {args.config} is not a mixture of experts", file=sys.stderr)
        return 2
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    context = args.prompt + args.tokens + 64
    t0 = time.perf_counter()
    model = random_model(config, device, dtype, context)
    build_s = time.perf_counter() - t0
    progress(f"random weights built in {build_s:.1f} s")
    bandwidth = measure_bandwidth(device)
    progress(f"bandwidth {bandwidth / 1e9:.0f} GB/s")
    active = active_bytes(config, dtype, kv_tokens=args.prompt + args.tokens // 2)
    ceiling = bandwidth / active
    prompt = torch.randint(0, 151_643, (args.prompt,), generator=torch.Generator().manual_seed(0))
    prompt = prompt.clamp(max=config.vocab_size - 1).tolist()
    rows: list[dict[str, Any]] = []
    wanted = args.engines.split(",")
    if "ours" in wanted:
        rows += bench_ours(model, config, prompt, args, device, dtype, context)
    if "transformers" in wanted:
        try:
            rows.append(bench_transformers(model, raw, prompt, args, device, dtype))
        except Exception as err:
            note = f"failed: {type(err).__name__}: {str(err).splitlines()[0]}"
            rows.append({"engine": "transformers", "note": note})
    reference = next((r for r in rows if r["engine"] == "transformers"), None)
    for row in rows:
        row["pct_of_ceiling"] = 100 * row["tok_s"] / ceiling if row.get("tok_s") else None
        if reference and row is not reference and "tokens" in row and "tokens" in reference:
            row["same_greedy"] = first_difference(row["tokens"], reference["tokens"])
    report = {
        "device": device_name(device),
        "dtype": args.dtype,
        "config": str(args.config),
        "layers": config.num_hidden_layers,
        "experts": f"{config.num_experts_per_tok} of {config.num_experts}",
        "parameters": config.num_parameters,
        "active_parameters": config.num_active_parameters,
        "active_bytes_per_token": active,
        "bandwidth_gb_s": bandwidth / 1e9,
        "ceiling_tok_s": ceiling,
        "build_s": build_s,
        "prompt_tokens": args.prompt,
        "decode_tokens": args.tokens,
        "rows": rows,
    }
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


def progress(text: str) -> None:
    print(f"bench_moe: {text}", file=sys.stderr, flush=True)


def random_model(config, device, dtype, context: int):
    """Our model with random weights made on the device (norms near 1, as trained ones are)."""
    import torch

    from qwen3tui.engine.model import Qwen3
    from qwen3tui.engine.weights import prepare_for_device

    with torch.device("meta"):
        model = Qwen3(config, context)
    model.to(dtype).to_empty(device=device)  # allocated once, in the compute dtype
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.requires_grad_(False)
            if name.endswith("norm.weight"):
                p.normal_(1.0, 0.1, generator=gen)
            else:
                p.normal_(0.0, 0.02, generator=gen)
    return prepare_for_device(model, device, dtype)


def active_bytes(config, dtype, kv_tokens: int) -> int:
    """Bytes one decode step reads: the active weights (router and k experts per sparse
    layer; one row of the embedding, the whole output head) and the KV cache."""
    import torch

    size = torch.empty((), dtype=dtype).element_size()
    weights = config.num_active_parameters + config.hidden_size
    if not config.tie_word_embeddings:
        weights -= config.vocab_size * config.hidden_size  # the embedding: one row read
    kv = 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * kv_tokens
    return (weights + kv) * size


def measure_bandwidth(device) -> float:
    """Bytes per second: the better of a sum() read and a copy_() (read + write), best of 5."""
    import torch

    n = (4 << 30 if device.type == "cuda" else 1 << 30) // 4
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    src.sum()
    dst.copy_(src)
    best = 0.0
    for _ in range(5):
        s, _ = timed(device, src.sum)
        c, _ = timed(device, lambda: dst.copy_(src))
        best = max(best, 4 * n / s, 8 * n / c)
    return best


def timed(device, fn):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t, out


def bench_ours(model, config, prompt, args, device, dtype, context) -> list[dict[str, Any]]:
    """One row per way a decoding token reaches its experts on the device (CPU: the host)."""
    from qwen3tui.engine import decode_step, moe
    from qwen3tui.engine.kv_cache import KVCache

    cache = KVCache(config, context, device, dtype)
    blocks = list(moe.moe_blocks(model))
    paths = ("fast", "grouped", "index") if device.type == "cuda" else ("host",)
    if device.type == "cuda" and not moe.grouped_mm_supported(model.embed_tokens.weight):
        paths = ("fast", "index")
    if "fast" in paths and args.expert_shapes:  # a row per pair of expert kernel blocks
        i = paths.index("fast")
        paths = paths[:i] + tuple(f"fast {pair}" for pair in args.expert_shapes) + paths[i + 1 :]
    rows = []
    for path in paths:
        for block in blocks:
            block.decode_path = path if path in ("grouped", "index") else "auto"
        if device.type == "cuda":  # its own CUDA graphs; "fast": of the Triton kernels
            step = decode_step.GraphedStep(model, cache, fast=path.startswith("fast"))
        else:
            step = decode_step.make_step(model, cache)
        if hasattr(step, "wait_compiled"):  # kernels compiled in the background: not timed
            step.wait_compiled(args.compile_timeout)
        if path.startswith("fast ") and step.compiled_ready is not None:
            use_expert_shapes(step, path.split()[1])
        note = f"{type(step).__name__}"
        if getattr(step, "compile_error", None):
            note += f" ({step.compile_error})"
        row = {"engine": f"ours, {path} experts", "note": note}
        try:
            row.update(decode_ours(model, cache, step, prompt, args))
        except Exception as err:  # one failed path is a row of the table, not a lost run
            row["note"] += f"; failed: {type(err).__name__}: {str(err).splitlines()[0]}"
        rows.append(row)
        progress(f"{row['engine']}: {row.get('tok_s') or 0:.1f} tok/s ({row['note']})")
    for block in blocks:
        block.decode_path = "auto"
    return rows


def use_expert_shapes(step, pair: str) -> None:
    """Set the fast step's expert kernel blocks from "RxCxW/RxCxW" (rows x columns x warps of
    gate/up, then of down) and run it once, so Triton compiles them before any capture."""
    from qwen3tui.engine.fast_decode import GemvShape, triton_next_pow2

    fast = step.compiled_ready
    for name, spec in zip(("expert_gate_up", "expert_down"), pair.split("/"), strict=True):
        rows, cols, warps = (int(v) for v in spec.split("x"))
        old = fast.shapes[name]
        width = old.cols * (fast.top_k if name == "expert_down" else 1)  # down: k experts' rows
        fast.shapes[name] = GemvShape(
            old.rows, old.cols, rows, min(cols, triton_next_pow2(width)), warps
        )
    step.pos.fill_(0)  # position 0 of the cache: each run's prefill writes it again
    fast(step.token, step.pos, 256)


def decode_ours(model, cache, step, prompt, args) -> dict[str, Any]:
    """Best of `repeats` runs: prefill the prompt, then `tokens` greedy steps, each launched
    before the host reads the previous token (as generate does)."""
    import torch

    from qwen3tui.engine.decode_step import HostToken
    from qwen3tui.engine.generate import prefill

    device = model.rope_cos.device
    best, tokens = None, []
    with torch.inference_mode():
        for run in range(args.repeats + 1):  # run 0 captures graphs: not counted
            cache.truncate(0)
            logits = prefill(model, cache, prompt, step=step)
            host = HostToken(device)
            out = []
            timed(device, lambda: None)  # the prefill has finished
            start = time.perf_counter()
            token = logits.argmax()  # 0-d, as the sampler gives it
            for i in range(args.tokens):
                host.start(token)
                pos = len(prompt) + i
                logits = step(token, pos)
                out.append(host.get())
                cache.tokens.append(out[-1])
                token = logits.argmax()
            timed(device, lambda: None)
            elapsed = time.perf_counter() - start
            tokens = out
            if run and (best is None or elapsed < best):
                best = elapsed
    return {
        "tok_s": args.tokens / best,
        "ms_per_token": 1e3 * best / args.tokens,
        "tokens": tokens[: args.check_tokens],
    }


def bench_transformers(model, raw, prompt, args, device, dtype) -> dict[str, Any]:
    import torch

    try:
        ref = transformers_view(model, raw, device, dtype)
    except ImportError:
        return {"engine": "transformers", "note": "transformers is not installed"}
    ids = torch.tensor([prompt], device=device)
    kwargs = {"do_sample": False, "pad_token_id": 0}

    def generate(n: int):
        return ref.generate(ids, max_new_tokens=n, min_new_tokens=n, **kwargs)

    with torch.inference_mode():
        generate(2)  # first-call costs
        best = None
        for _ in range(args.repeats):
            ttft, _ = timed(device, lambda: generate(1))
            total, out = timed(device, lambda: generate(args.tokens))
            rate = (args.tokens - 1) / (total - ttft) if total > ttft else 0.0
            best = rate if best is None or rate > best else best
    experts = getattr(ref.config, "_experts_implementation", None)
    return {
        "engine": "transformers",
        "note": f"{getattr(__import__('transformers'), '__version__', '?')}, experts: {experts}",
        "tok_s": best,
        "ms_per_token": 1e3 / best if best else None,
        "tokens": out[0, len(prompt) :].tolist()[: args.check_tokens],
    }


def transformers_view(model, raw, device, dtype):
    """transformers' Qwen3MoeForCausalLM whose parameters are views of our model's tensors."""
    import torch
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    hf_config = Qwen3MoeConfig(**{k: v for k, v in raw.items() if k != "architectures"})
    hf_config.dtype = dtype
    with torch.device("meta"):
        ref = Qwen3MoeForCausalLM(hf_config)
    config = model.config
    q = config.num_attention_heads * config.head_dim
    kv = config.num_key_value_heads * config.head_dim
    state = {
        "model.embed_tokens.weight": model.embed_tokens.weight,
        "model.norm.weight": model.norm.weight,
        "lm_head.weight": model.output_weight(),
    }
    for i, layer in enumerate(model.layers):
        hub = f"model.layers.{i}."
        qkv = layer.inputs.qkv_proj.weight
        out = layer.output
        state.update(
            {
                hub + "input_layernorm.weight": layer.inputs.norm.weight,
                hub + "self_attn.q_proj.weight": qkv[:q],
                hub + "self_attn.k_proj.weight": qkv[q : q + kv],
                hub + "self_attn.v_proj.weight": qkv[q + kv :],
                hub + "self_attn.q_norm.weight": layer.inputs.q_norm.weight,
                hub + "self_attn.k_norm.weight": layer.inputs.k_norm.weight,
                hub + "self_attn.o_proj.weight": out.o_proj.weight,
                hub + "post_attention_layernorm.weight": out.norm.weight,
            }
        )
        if hasattr(out, "moe"):
            state[hub + "mlp.gate.weight"] = out.moe.router.weight
            state[hub + "mlp.experts.gate_up_proj"] = out.moe.experts.gate_up_proj
            state[hub + "mlp.experts.down_proj"] = out.moe.experts.down_proj
        else:
            inter = config.intermediate_size
            state[hub + "mlp.gate_proj.weight"] = out.gate_up_proj.weight[:inter]
            state[hub + "mlp.up_proj.weight"] = out.gate_up_proj.weight[inter:]
            state[hub + "mlp.down_proj.weight"] = out.down_proj.weight
    ref.load_state_dict(state, strict=True, assign=True)
    # Buffers made on the meta device (rotary frequencies) are rebuilt on the real one.
    with torch.device(device):
        ref.model.rotary_emb = type(ref.model.rotary_emb)(config=hf_config)
    return ref.eval()


def first_difference(ours: list[int], theirs: list[int]) -> str:
    n = min(len(ours), len(theirs))
    k = next((i for i in range(n) if ours[i] != theirs[i]), None)
    return f"all {n}" if k is None else f"first {k} of {n}"


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def print_table(r: dict[str, Any]) -> None:
    print(
        f"\nQwen3-MoE decode, batch 1: {r['layers']} layers, {r['experts']} experts, "
        f"{r['parameters'] / 1e9:.2f} B parameters ({r['active_parameters'] / 1e9:.2f} B active),"
        f" {r['dtype']}, on {r['device']}"
    )
    print(
        f"bandwidth {r['bandwidth_gb_s']:.0f} GB/s; a token reads"
        f" {r['active_bytes_per_token'] / 1e9:.2f} GB (active weights + KV):"
        f" ceiling {r['ceiling_tok_s']:.1f} tok/s; prompt {r['prompt_tokens']},"
        f" {r['decode_tokens']} tokens decoded\n"
    )
    print("| engine | decode tok/s | ms/token | % of ceiling | greedy tokens equal | note |")
    print("|---|---:|---:|---:|---|---|")
    for row in r["rows"]:
        cells = ["-", "-", "-"]
        if row.get("tok_s"):
            cells = [
                f"{row['tok_s']:.1f}",
                f"{row['ms_per_token']:.2f}",
                f"{row['pct_of_ceiling']:.0f}%",
            ]
        same = row.get("same_greedy", "-")
        print(f"| {row['engine']} | {' | '.join(cells)} | {same} | {row.get('note', '')} |")


if __name__ == "__main__":
    sys.exit(main())
