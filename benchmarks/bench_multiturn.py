"""Time to first token of a new turn after a long conversation, with and without prefix reuse.

The engine keeps the KV cache of the conversation and prefills only what the next prompt adds.
The template renders the last reply differently from how it was generated (reasoning dropped),
so after each reply the app has the engine prefill the next prompt's start while the user
types (`Engine.prepare_next_turn`). This compares:
- the same new message with no history (the floor),
- after ~N tokens of history, cache reused, warmed after the last reply (what the app does),
- the same without the warm-up (the last reply is prefilled again before the first token),
- after the same history on an empty cache (what an engine without reuse pays).

    python benchmarks/bench_multiturn.py --checkpoint DIR [--device cpu] [--history 4000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qwen3tui.engine import ChatOptions, SamplingOverrides, Summary, load_engine  # noqa: E402

WORDS = "the quick brown fox jumps over the lazy dog while the river runs to the sea ".split()


def ttft(engine, messages, *, reset: bool) -> Summary:
    if reset:
        engine.reset_cache()
    options = ChatOptions(
        thinking=False, max_new_tokens=8, sampling=SamplingOverrides(temperature=0)
    )
    return list(engine.chat(messages, options))[-1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--history", type=int, default=4000, help="tokens of earlier conversation")
    args = p.parse_args()
    engine = load_engine(args.checkpoint, device=args.device, dtype=args.dtype, context_length=8192)
    wait = getattr(engine.step, "wait_compiled", None)
    if wait is not None:
        wait(900)  # CUDA: measure the steady state, not a compile competing for the GIL
    new = {"role": "user", "content": "And what about the mountains in winter?"}
    ttft(engine, [new], reset=True)  # warm-up
    floor = ttft(engine, [new], reset=True)

    # Build the history turn by turn, as the app would, so the cache holds it.
    history: list[dict[str, str]] = []
    engine.reset_cache()
    turn = 0
    while engine.count_tokens(history + [new], thinking=False) < args.history:
        if history:
            engine.prepare_next_turn(history)
        question = " ".join(WORDS[(turn + i) % len(WORDS)] for i in range(300))
        history.append({"role": "user", "content": f"Question {turn}: {question}"})
        reply = ttft(engine, history, reset=False)
        history.append({"role": "assistant", "content": reply.answer or "ok"})
        turn += 1
    unwarmed = ttft(engine, history + [new], reset=False)
    # Back to the state right after the last reply plus its warm-up (which, with the cache
    # already holding the history, only trims the cache to the prompt's start).
    engine.prepare_next_turn(history)
    reused = ttft(engine, history + [new], reset=False)
    cold = ttft(engine, history + [new], reset=True)

    info = engine.info
    print(f"device {info.device}, {info.dtype}; prompt after history {cold.usage.prompt_tokens}")
    print("| new message | prompt tokens | prefilled | TTFT |")
    print("|---|---|---|---|")
    for name, s in (
        ("no history", floor),
        ("after history, cache reused, warmed after the last reply", reused),
        ("after history, cache reused, no warm-up", unwarmed),
        ("after history, empty cache", cold),
    ):
        ms = s.timings.ttft_s * 1e3
        print(f"| {name} | {s.usage.prompt_tokens} | {s.prefilled_tokens} | {ms:.0f} ms |")
    print(
        f"reuse: TTFT {reused.timings.ttft_s / floor.timings.ttft_s:.2f}x the no-history TTFT"
        f" (target <= 1.5x); without the warm-up"
        f" {unwarmed.timings.ttft_s / floor.timings.ttft_s:.2f}x;"
        f" without reuse {cold.timings.ttft_s / floor.timings.ttft_s:.1f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
