"""Benchmark worker for this engine: load, prefill/TTFT per prompt length, decode, correctness.

Run by bench_engine.py in its own process: `python _bench_ours.py JOB.json RESULT.json`.
Drives `qwen3tui.engine.generate.generate` with exact prompt token ids (no chat template), so
both engines see the same tokens.
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
)


def main(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    from qwen3tui.engine import SamplingParams, Summary, load_engine
    from qwen3tui.engine.generate import Request, generate

    device = job["device"]
    reset_peak(device)
    t0 = time.perf_counter()
    engine = load_engine(
        job["checkpoint"],
        device=device,
        dtype=job["dtype"],
        context_length=job["context_length"],
        quantize=job.get("quantize"),
    )
    sync(device)
    load_s = time.perf_counter() - t0
    result: dict[str, Any] = {
        "engine": "ours",
        "load_s": load_s,
        "info": {k: getattr(engine.info, k) for k in ("device", "dtype", "context_length")},
        "quantize": job.get("quantize"),
        "model_bytes": _bytes_read_per_token(engine.model),
        "kv_cache_bytes": _kv_bytes(engine.cache),
        "after_load": {**memory_now(device), **peak_memory(device)},
    }
    # The engine keeps one decode step (with its captured CUDA graphs) for every turn; a step
    # made per call would capture again each time, which no chat turn pays.
    step_kwargs = {}
    if (
        getattr(engine, "step", None) is not None
        and "step" in inspect.signature(generate).parameters
    ):
        step_kwargs["step"] = engine.step
    result["shared_step"] = bool(step_kwargs)

    def run(ids: list[int], new_tokens: int) -> Summary:
        engine.reset_cache()
        request = Request(
            prompt_ids=list(ids),
            opens_thinking=False,
            thinking_budget=None,
            max_new_tokens=new_tokens,
            sampling=SamplingParams(temperature=0),
        )
        summary = None
        events = generate(engine.model, engine.cache, engine.tokenizer, request, **step_kwargs)
        for event in events:
            if isinstance(event, Summary):
                summary = event
        sync(device)
        assert summary is not None, "generate ended without a Summary"
        return summary

    warm_t0 = time.perf_counter()
    run(job["warmup_ids"], job["warmup_tokens"])  # first-call costs: allocator, kernels, graphs
    result["warmup_s"] = time.perf_counter() - warm_t0

    result["compile"] = _wait_for_compile(engine, run, job)

    result["prefill"] = {}
    for n, ids in job["prompts"].items():
        runs = []
        for _ in range(job["repeats"]):
            s = run(ids, 1)
            runs.append(
                {
                    "ttft_s": s.timings.ttft_s,
                    # The engine's own prefill timer does not wait for a GPU; tokens over TTFT
                    # (which waits for the first sampled token) is right on every device.
                    "prefill_tok_s": int(n) / s.timings.ttft_s if s.timings.ttft_s else 0.0,
                    "engine_prefill_tok_s": s.timings.prefill_tok_s,
                    "prefilled_tokens": s.prefilled_tokens,
                }
            )
        best = min(runs, key=lambda r: r["ttft_s"])
        result["prefill"][n] = {**best, "runs": runs}

    result["decode"] = _decode(run, job)

    check = run(job["check_ids"], job["check_tokens"])
    result["check_tokens"] = list(check.token_ids)
    result["check_logits_saved"] = _last_logits(engine, job, torch)
    result["forced_saved"] = _forced_logits(engine, job, torch)
    engine.reset_cache()
    result["peak"] = peak_memory(device)
    return result


def _decode(run, job: dict[str, Any]) -> dict[str, Any]:
    """Decode speed over `decode_tokens` new tokens, best of `repeats` runs.

    Repeats matter on CUDA: the engine captures a graph the first time the cache reaches a new
    bucket, once per engine lifetime, and the first run pays for it. Random weights under greedy
    decoding can pick an end-of-turn id early, which ends the reply; the next prompt is tried
    then, and the longest run kept.
    """
    wanted = job["decode_tokens"]
    best: dict[str, Any] | None = None
    runs = []
    for attempt, ids in enumerate(job["decode_prompts"]):
        for _ in range(job["repeats"]):
            s = run(ids, wanted)
            got = {
                "decode_tok_s": s.timings.decode_tok_s,
                "tokens": len(s.token_ids),
                "finish_reason": s.finish_reason,
                "prompt_tokens": len(ids),
                "attempt": attempt,
            }
            runs.append(got)
            if best is None or (got["tokens"], got["decode_tok_s"]) > (
                best["tokens"],
                best["decode_tok_s"],
            ):
                best = got
            if got["tokens"] < wanted:
                break  # this prompt ends early every time: greedy is deterministic
        if best is not None and best["tokens"] >= wanted:
            break
    assert best is not None, "no decode prompt given"
    return {**best, "runs": runs}


def _wait_for_compile(engine, run, job: dict[str, Any]) -> dict[str, Any] | None:
    """Where the engine compiles its decode step in the background, time a decode before that
    is ready (what a first reply gets), then wait for it: the table reports the steady state.

    Duck-typed on the kept step's `wait_compiled` (not public API); absent, nothing happens.
    """
    step = getattr(engine, "step", None)
    wait = getattr(step, "wait_compiled", None)
    if wait is None:
        return None
    before = None
    if getattr(step, "compiled_ready", None) is None:
        s = run(job["decode_prompts"][0], job["decode_tokens"])
        before = {"decode_tok_s": s.timings.decode_tok_s, "tokens": len(s.token_ids)}
    t0 = time.perf_counter()
    ready = bool(wait(job.get("compile_timeout_s", 900)))
    waited = time.perf_counter() - t0
    if ready:
        run(job["decode_prompts"][0], job["decode_tokens"])  # recapture graphs with compiled code
    return {
        "compiled": ready,
        "waited_s": waited,
        "error": getattr(step, "compile_error", None),
        "child_error": getattr(step, "child_error", None),
        "decode_before_compiled": before,
    }


def _last_logits(engine, job: dict[str, Any], torch) -> bool:
    """Logits at the last prompt position, for the comparison with the peer.

    Uses the model's forward directly (not part of the public API): if its signature changes,
    the comparison is skipped rather than the benchmark failing.
    """
    path = job.get("logits_path")
    if not path:
        return False
    try:
        engine.reset_cache()
        ids = torch.tensor([job["check_ids"]], dtype=torch.long, device=engine.info.device)
        with torch.inference_mode():
            out = engine.model(ids, 0, engine.cache)
        save_logits(path, out.reshape(-1, out.shape[-1])[-1])
        return True
    except Exception as err:  # report, do not fail the run
        print(f"ours: last-position logits unavailable ({type(err).__name__}: {err})")
        return False


def _forced_logits(engine, job: dict[str, Any], torch) -> bool:
    """Logits of decode steps fed fixed tokens (not sampled: every run sees the same ones),
    for comparing quantized runs with the bf16 run step by step."""
    ids, path = job.get("forced_ids"), job.get("forced_logits_path")
    if not ids or not path:
        return False
    start = job["forced_prompt"]
    engine.reset_cache()
    device = engine.info.device
    rows = []
    with torch.inference_mode():
        prompt = torch.tensor([ids[:start]], dtype=torch.long, device=device)
        rows.append(engine.model(prompt, 0, engine.cache).reshape(-1)[None].float().cpu())
        for pos in range(start, len(ids) - 1):
            token = torch.tensor([[ids[pos]]], dtype=torch.long, device=device)
            rows.append(engine.model(token, pos, engine.cache).reshape(1, -1).float().cpu())
    engine.reset_cache()
    torch.save(torch.cat(rows), path)
    return True


def _model_bytes(model) -> int:
    """Bytes of every weight tensor the model holds (shared storage counted once)."""
    seen: dict[int, int] = {}
    for t in list(model.parameters()) + list(model.buffers()):
        try:
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        except (RuntimeError, NotImplementedError):
            seen[id(t)] = t.numel() * t.element_size()
    return sum(seen.values())


def _bytes_read_per_token(model) -> int:
    """What a decode step reads: every weight, except that of an embedding table with its own
    output head (the int8 head, an untied model) only one row is looked up."""
    total = _model_bytes(model)
    if getattr(model, "lm_head", None) is not None:
        table = model.embed_tokens.weight
        total -= table.numel() * table.element_size()
    return total


def _kv_bytes(cache) -> int | None:
    try:
        return int(cache.nbytes())
    except AttributeError:
        return None


if __name__ == "__main__":
    run_worker(main)
