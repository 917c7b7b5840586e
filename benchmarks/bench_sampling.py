"""Decode tok/s with the next token drawn inside the CUDA graph against drawn between replays.

    python benchmarks/bench_sampling.py --checkpoint benchmarks/checkpoints/qwen3-1.7b-random

One engine, one process: replies of `--tokens` tokens, greedy and with Qwen's thinking-mode
sampling (temperature 0.6, top-p 0.95, top-k 20; also with a presence penalty), each drawn by
the graph (`graph_sampler`) and by `Sampler`'s torch operations between replays (the graph
draw switched off), in turn, `--rounds` times; the table gives the medians. End-of-turn tokens
are ignored so every reply is as long (random weights pick them now and then).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qwen3tui.engine import graph_sampler, load_engine  # noqa: E402
from qwen3tui.engine.events import Summary  # noqa: E402
from qwen3tui.engine.generate import Request, generate  # noqa: E402
from qwen3tui.engine.options import THINKING_DEFAULTS, SamplingParams  # noqa: E402

SAMPLINGS = {
    "greedy": SamplingParams(temperature=0),
    "thinking defaults": THINKING_DEFAULTS,
    "thinking defaults, presence penalty 1.5": replace(THINKING_DEFAULTS, presence_penalty=1.5),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    engine = load_engine(str(args.checkpoint), device="cuda", dtype="bfloat16", context_length=4096)
    if not engine.step.wait_compiled(600):
        print(f"fast kernels not built: {engine.step.compile_error}")
        return 1
    engine.tokenizer._eos_token_ids = frozenset()  # every reply runs its full length
    prompt = engine.tokenizer.encode("The lighthouse keeper climbed the stairs. " * 8)
    by_graph = graph_sampler.kind

    def reply(params: SamplingParams, in_graph: bool) -> float:
        graph_sampler.kind = by_graph if in_graph else (lambda _params: None)
        engine.reset_cache()
        request = Request(
            prompt_ids=prompt, opens_thinking=False, thinking_budget=None,
            max_new_tokens=args.tokens, sampling=params,
        )  # fmt: skip
        events = generate(engine.model, engine.cache, engine.tokenizer, request, step=engine.step)
        summary = [e for e in events if isinstance(e, Summary)][0]
        torch.cuda.synchronize()
        return summary.timings.decode_tok_s

    rows = []
    for name, params in SAMPLINGS.items():
        runs: dict[bool, list[float]] = {True: [], False: []}
        for in_graph in (True, False):
            reply(params, in_graph)  # graphs captured, kernels loaded
        for _ in range(args.rounds):
            for in_graph in (True, False):
                runs[in_graph].append(reply(params, in_graph))
        graph, between = (statistics.median(runs[k]) for k in (True, False))
        rows.append(f"| {name} | {graph:.1f} | {between:.1f} | {graph / between:.3f}x |")
    graph_sampler.kind = by_graph
    print(
        f"{torch.cuda.get_device_name()}, replies of {args.tokens} tokens, median of {args.rounds}"
    )
    print("| sampling | drawn in the graph (tok/s) | drawn between replays | ratio |")
    print("|---|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
