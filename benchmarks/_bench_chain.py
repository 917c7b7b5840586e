"""Benchmark worker: the "plain library" line, a chain of cuBLAS GEMVs over the model's weights.

Per layer one GEMV each for q/k/v (fused into one matrix), o, gate/up (fused) and down, then
the output head: every weight byte a decode step reads, and nothing else (no norms, attention,
activation or sampling). On CUDA the chain of one token is a CUDA graph, so launches cost
nothing. Random weights of the checkpoint's shapes: the time does not depend on the values.
It shows what the vendor's matrix-vector kernels alone reach where ours fuse the rest in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from _bench_worker import peak_memory, reset_peak, run_worker, sync, timed, torch_dtype

from qwen3tui.engine.config import Qwen3Config


def main(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    device, dtype = job["device"], torch_dtype(job["dtype"])
    reset_peak(device)
    raw = json.loads((Path(job["checkpoint"]) / "config.json").read_text())
    config = Qwen3Config.from_dict(raw)
    weights = chain_weights(config, dtype, device)
    x = torch.randn(config.hidden_size, dtype=dtype, device=device)
    tokens = int(job["decode_tokens"])

    def one_token() -> torch.Tensor:
        return run_chain(weights, x, config)

    step = one_token
    if device.startswith("cuda"):
        one_token()  # cuBLAS's first use allocates its workspace, which a graph can't capture
        sync(device)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            one_token()
        step = graph.replay

    def decode() -> None:
        for _ in range(tokens):
            step()

    decode()  # warm
    seconds = min(timed(device, decode)[0] for _ in range(int(job["repeats"])))
    weight_bytes = sum(w.numel() * w.element_size() for w in _flat(weights))
    return {
        "engine": "cuBLAS GEMV chain",
        "decode": {
            "decode_tok_s": tokens / seconds,
            "tokens": tokens,
            "gb_s": weight_bytes * tokens / seconds / 1e9,
        },
        "chain_weight_bytes": weight_bytes,
        "peak": peak_memory(device),
    }


def chain_weights(config: Qwen3Config, dtype, device: str) -> dict[str, Any]:
    import torch

    hidden, inter = config.hidden_size, config.intermediate_size
    q, kv = _q_rows(config), config.num_key_value_heads * config.head_dim

    def w(rows: int, cols: int) -> torch.Tensor:
        return torch.empty(rows, cols, dtype=dtype, device=device).normal_(0, 0.02)

    layers = [
        {"qkv": w(q + 2 * kv, hidden), "o": w(hidden, q), "gate_up": w(2 * inter, hidden),
         "down": w(hidden, inter)}
        for _ in range(config.num_hidden_layers)
    ]  # fmt: skip
    return {"layers": layers, "head": w(config.vocab_size, hidden)}


def run_chain(weights: dict[str, Any], x, config: Qwen3Config):
    """One token through the chain: each GEMV's input is a slice of the one before's output."""
    import torch

    q, inter = _q_rows(config), config.intermediate_size
    for layer in weights["layers"]:
        qkv = torch.mv(layer["qkv"], x)
        x = torch.mv(layer["o"], qkv[:q])
        gate_up = torch.mv(layer["gate_up"], x)
        x = torch.mv(layer["down"], gate_up[:inter])
    return torch.mv(weights["head"], x)


def _q_rows(config: Qwen3Config) -> int:
    return config.num_attention_heads * config.head_dim


def _flat(weights: dict[str, Any]) -> list:
    return [w for layer in weights["layers"] for w in layer.values()] + [weights["head"]]


if __name__ == "__main__":
    run_worker(main)
