"""Speed must never change the answer: the CUDA fast paths against the plain path.

On a CUDA machine, with a full-size random Qwen3-1.7B-shaped checkpoint:
- float32: greedy tokens of the plain eager decode, the CUDA-graph decode and the fast
  decode (the Triton kernels of engine/fast_decode.py, replayed from CUDA graphs) are
  identical over --tokens steps;
- bfloat16: with the same tokens forced, the fast path's logits are no further from the
  float32 logits than the plain bf16 path's are (max |diff| / max |logit|, 1.5x slack).

    python benchmarks/check_fast_paths.py --checkpoint DIR [--tokens 300]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qwen3tui.engine import load_engine  # noqa: E402
from qwen3tui.engine.decode_step import EagerStep, GraphedStep  # noqa: E402
from qwen3tui.engine.generate import Request, generate, prefill  # noqa: E402
from qwen3tui.engine.options import SamplingParams  # noqa: E402


def greedy(engine, step, prompt: list[int], n: int) -> list[int]:
    engine.reset_cache()
    request = Request(prompt, False, None, n, SamplingParams(temperature=0))
    return list(generate(engine.model, engine.cache, engine.tokenizer, request, step=step))[
        -1
    ].token_ids


def forced_logits(engine, step, prompt: list[int], forced: list[int]) -> torch.Tensor:
    engine.reset_cache()
    rows = []
    with torch.inference_mode():
        logits = engine.model(torch.tensor([prompt], device="cuda"), 0, engine.cache)[0, -1]
        engine.cache.tokens.extend(prompt)
        for token in forced:
            rows.append(logits.float().clone())
            logits = step(torch.tensor(token, device="cuda"), engine.cache.length)
            engine.cache.tokens.append(token)
    return torch.stack(rows)


def prefill_logits(engine, history: list[int], chunk: list[int], step) -> torch.Tensor:
    """The first token's logits for `chunk` after `history` (prefilled plainly)."""
    engine.reset_cache()
    with torch.inference_mode():
        if history:
            prefill(engine.model, engine.cache, history)
        return prefill(engine.model, engine.cache, chunk, step=step).float()


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--long", type=int, default=3500, help="tokens of the long prompt")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("check_fast_paths: needs a CUDA GPU")
        return 2
    prompt = torch.randint(1000, 100000, (100,), generator=torch.Generator().manual_seed(0))
    prompt = prompt.tolist()
    # A long prompt too: decode attention then reads a window of many buckets.
    long_prompt = torch.randint(
        1000, 100000, (args.long,), generator=torch.Generator().manual_seed(1)
    )
    long_prompt, long_forced = long_prompt.tolist(), list(range(2000, 2032))
    ok = True
    exact = None  # float32 plain-path logits: the yardstick for bf16 error
    long_exact = None
    # Prefill graphs (bf16 on CUDA): prompts padded to 128, 1024 and 2048, and a short chunk
    # after a long history.
    ids = torch.randint(1000, 100000, (3100,), generator=torch.Generator().manual_seed(2)).tolist()
    prefills = {
        "100-token prompt": ([], ids[:100]),
        "1000-token prompt": ([], ids[:1000]),
        "2048-token prompt": ([], ids[:2048]),
        "50 tokens after 3000": (ids[:3000], ids[3000:3050]),
    }
    prefill_exact = {}
    for dtype in ("float32", "bfloat16"):
        engine = load_engine(args.checkpoint, device="cuda", dtype=dtype, context_length=4096)
        eager = EagerStep(engine.model, engine.cache)
        graphs = GraphedStep(engine.model, engine.cache, fast=False)
        fast = engine.step  # the engine's own step: the fast kernels once they are built
        ready = fast.wait_compiled(900)
        if dtype == "float32":
            plain = greedy(engine, eager, prompt, args.tokens)
            for name, step in (("cuda graphs", graphs), ("fast kernels + graphs", fast)):
                same = greedy(engine, step, prompt, args.tokens) == plain
                ok &= same
                print(f"float32 greedy, {args.tokens} tokens: {name} == plain: {same}")
            forced = plain[:64]
            exact = forced_logits(engine, eager, prompt, forced)
            long_exact = forced_logits(engine, eager, long_prompt, long_forced)
            for what, (history, chunk) in prefills.items():
                prefill_exact[what] = prefill_logits(engine, history, chunk, None)
        else:
            # bf16 rounds differently on every path; the fast path must not be further from
            # the float32 answer than the plain bf16 path is (with a little slack).
            for what, ids, steps, yardstick in (
                (f"{len(prompt)}-token prompt", prompt, forced, exact),
                (f"{len(long_prompt)}-token prompt", long_prompt, long_forced, long_exact),
            ):
                plain_err = rel_diff(forced_logits(engine, eager, ids, steps), yardstick)
                fast_err = rel_diff(forced_logits(engine, fast, ids, steps), yardstick)
                ok &= fast_err <= 1.5 * plain_err
                print(
                    f"bfloat16 logits vs float32, {what}, {len(steps)} forced steps: plain path"
                    f" max rel diff {plain_err:.2e}, fast kernels + graphs {fast_err:.2e}"
                )
            for what, (history, chunk) in prefills.items():
                yardstick = prefill_exact[what]
                plain_err = rel_diff(prefill_logits(engine, history, chunk, None), yardstick)
                fast_err = rel_diff(prefill_logits(engine, history, chunk, fast), yardstick)
                ok &= fast_err <= 1.5 * plain_err
                print(
                    f"bfloat16 first-token logits vs float32, {what}: plain prefill max rel diff"
                    f" {plain_err:.2e}, prefill graphs {fast_err:.2e}"
                    f" (graphs for {sorted(fast.prefills)})"
                )
        print(f"  ({dtype}: fast kernels ready: {ready}, error: {fast.compile_error})")
        ok &= ready  # without them the "fast" rows above compared the plain graphs
        del engine, eager, graphs, fast
        torch.cuda.empty_cache()
    print("fast paths:", "OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
