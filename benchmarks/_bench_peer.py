"""Benchmark worker for the peer, Hugging Face `transformers` (`generate`, greedy).

Run by bench_engine.py in its own process: `python _bench_peer.py JOB.json RESULT.json`.
Prefill = one forward over the prompt; TTFT = generate with one new token; decode =
(generate N with min_new_tokens=N, minus TTFT) / (N - 1). With job["static"], generate uses one
StaticCache of the context length, and transformers compiles the decode step (torch.compile).
"""

from __future__ import annotations

import inspect
import time
from typing import Any

from _bench_worker import (
    memory_now,
    peak_memory,
    reset_peak,
    run_worker,
    save_logits,
    sync,
    timed,
    torch_dtype,
)


def main(job: dict[str, Any]) -> dict[str, Any]:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    device, dtype = job["device"], torch_dtype(job["dtype"])
    reset_peak(device)
    t0 = time.perf_counter()
    model = _load(AutoModelForCausalLM, job["checkpoint"], dtype).to(device).eval()
    sync(device)
    load_s = time.perf_counter() - t0
    _greedy_defaults(model)
    static = bool(job.get("static"))
    result: dict[str, Any] = {
        "engine": "transformers-static" if static else "transformers",
        "version": transformers.__version__,
        "load_s": load_s,
        "after_load": {**memory_now(device), **peak_memory(device)},
    }
    keep_last = "logits_to_keep" in inspect.signature(model.forward).parameters
    gen_kwargs: dict[str, Any] = {}
    static_cache = None
    if static:
        from transformers import StaticCache

        # One cache of one size for every call: a new size would mean compiling again.
        static_cache = StaticCache(config=model.config, max_cache_len=job["context_length"])
        if not device.startswith("cuda"):
            gen_kwargs["compile_config"] = _compile_everywhere()

    def ids_tensor(ids: list[int]) -> torch.Tensor:
        return torch.tensor([ids], dtype=torch.long, device=device)

    def gen(ids: list[int], new: int, force: bool) -> torch.Tensor:
        x = ids_tensor(ids)
        extra: dict[str, Any] = {"min_new_tokens": new} if force else {}
        with torch.inference_mode():
            if static_cache is not None:
                static_cache.reset()  # its tensors were made under inference mode
                extra["past_key_values"] = static_cache
            return model.generate(
                x, attention_mask=torch.ones_like(x), max_new_tokens=new, **extra, **gen_kwargs
            )

    def forward(ids: list[int]) -> torch.Tensor:
        # Only the last position's logits, as generate's prefill computes them.
        kwargs = {"logits_to_keep": 1} if keep_last else {}
        with torch.inference_mode():
            return model(ids_tensor(ids), **kwargs).logits

    warm = time.perf_counter()
    gen(job["warmup_ids"], job["warmup_tokens"], force=True)
    result["warmup_s"] = time.perf_counter() - warm  # includes compiling with --peer-static

    result["prefill"] = {}
    for n, ids in job["prompts"].items():
        runs = []
        for _ in range(job["repeats"]):
            forward_s, _ = timed(device, lambda ids=ids: forward(ids))
            ttft_s, _ = timed(device, lambda ids=ids: gen(ids, 1, force=True))
            runs.append(
                {"ttft_s": ttft_s, "forward_s": forward_s, "prefill_tok_s": int(n) / forward_s}
            )
        best = min(runs, key=lambda r: r["ttft_s"])
        result["prefill"][n] = {**best, "runs": runs}

    wanted = job["decode_tokens"]
    ids = job["decode_prompts"][0]
    if static:
        gen(ids, wanted, force=True)  # compiles for this prompt length
    runs = []
    for _ in range(job["repeats"]):
        ttft_s, _ = timed(device, lambda: gen(ids, 1, force=True))
        total_s, out = timed(device, lambda: gen(ids, wanted, force=True))
        decoded = out.shape[1] - len(ids)
        runs.append(
            {
                "decode_tok_s": (decoded - 1) / (total_s - ttft_s) if total_s > ttft_s else 0.0,
                "tokens": decoded,
                "finish_reason": "length",
                "prompt_tokens": len(ids),
                "generate_s": total_s,
                "ttft_s": ttft_s,
            }
        )
    best = max(runs, key=lambda r: r["decode_tok_s"])
    result["decode"] = {**best, "runs": runs}

    if not static:
        out = gen(job["check_ids"], job["check_tokens"], force=False)
        result["check_tokens"] = out[0, len(job["check_ids"]) :].tolist()
        result["divergence"] = _divergence(forward, job, result["check_tokens"])
        if job.get("logits_path"):
            save_logits(job["logits_path"], forward(job["check_ids"])[0, -1])
            result["check_logits_saved"] = True
    result["peak"] = peak_memory(device)
    return result


def _divergence(forward, job: dict[str, Any], reference: list[int]) -> dict[str, Any] | None:
    """Where our greedy tokens first differ: how far our pick is below the reference's best.

    With bf16 logits a near-tie (our pick within a rounding step of the best) can flip either
    way; a pick far below the best means the engine computes something else.
    """
    ours = job.get("ours_check_tokens")
    if not ours:
        return None
    k = next((i for i, (a, b) in enumerate(zip(ours, reference, strict=False)) if a != b), None)
    if k is None:
        return None
    logits = forward(job["check_ids"] + reference[:k])[0, -1].float()
    top2 = logits.topk(2).values
    return {
        "step": k,
        "reference_token": reference[k],
        "ours_token": ours[k],
        "ours_below_best": float(logits.max() - logits[ours[k]]),
        "reference_top1_margin": float(top2[0] - top2[1]),
    }


def _load(auto, checkpoint: str, dtype):
    try:
        return auto.from_pretrained(checkpoint, dtype=dtype)
    except TypeError:  # transformers before 4.56 calls it torch_dtype
        return auto.from_pretrained(checkpoint, torch_dtype=dtype)


def _greedy_defaults(model) -> None:
    """Greedy, and no sampling settings from generation_config.json to warn about."""
    gc = model.generation_config
    gc.do_sample = False
    for name in ("temperature", "top_p", "top_k", "min_p"):
        if hasattr(gc, name):
            setattr(gc, name, None)
    if gc.pad_token_id is None:
        eos = gc.eos_token_id
        gc.pad_token_id = eos[0] if isinstance(eos, list) else eos


def _compile_everywhere():
    """transformers compiles a static-cache generate on accelerators only unless told."""
    from transformers import CompileConfig

    config = CompileConfig()
    config._compile_all_devices = True
    return config


if __name__ == "__main__":
    run_worker(main)
