"""Run one decode step: plainly, or replayed from CUDA graphs.

At batch 1 a decode step is hundreds of small kernels; launching them from Python costs more
than the GPU takes to run them. A CUDA graph launches them all at once. Graphs need fixed
shapes, so attention reads a fixed window of the cache (the filled length rounded up to a
bucket) with the unfilled tail masked; one graph per bucket, captured the first time a
conversation reaches it and kept for the life of the engine.
"""

from __future__ import annotations

import os

import torch

from .kv_cache import KVCache
from .model import Qwen3

BUCKET = 256  # tokens; at most 255 masked positions are read beyond the filled part


class EagerStep:
    def __init__(self, model: Qwen3, cache: KVCache) -> None:
        self.model, self.cache = model, cache

    def __call__(self, token: torch.Tensor, pos: int) -> torch.Tensor:
        return self.model(token.view(1, 1), pos, self.cache)[0, -1]


class GraphedStep:
    def __init__(self, model: Qwen3, cache: KVCache) -> None:
        self.model, self.cache = model, cache
        device = model.rope_cos.device
        self.token = torch.zeros((1, 1), dtype=torch.long, device=device)
        self.pos = torch.zeros((1,), dtype=torch.long, device=device)
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self.pool = None

    def __call__(self, token: torch.Tensor, pos: int) -> torch.Tensor:
        self.token.copy_(token.view(1, 1))
        self.pos.fill_(pos)
        kv_len = min(-(-(pos + 1) // BUCKET) * BUCKET, self.cache.max_tokens)
        if kv_len not in self.graphs:
            self.graphs[kv_len] = self._capture(kv_len)
        graph, logits = self.graphs[kv_len]
        graph.replay()
        return logits

    def _capture(self, kv_len: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        if not self.graphs:
            # Warm up once off the capture stream (lazy cuBLAS/allocator init can't be captured).
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self.model.decode_step(self.token, self.pos, self.cache, kv_len)
            torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            logits = self.model.decode_step(self.token, self.pos, self.cache, kv_len)[0, -1]
        self.pool = graph.pool()
        return graph, logits


def make_step(model: Qwen3, cache: KVCache) -> EagerStep | GraphedStep:
    device = model.rope_cos.device
    if device.type == "cuda" and os.environ.get("QWEN3TUI_CUDA_GRAPHS", "1") != "0":
        return GraphedStep(model, cache)
    return EagerStep(model, cache)


class HostToken:
    """Brings a sampled token id to the host without waiting for work queued after it."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        if self.cuda:
            self.buffer = torch.zeros((), dtype=torch.long, pin_memory=True)
            self.ready = torch.cuda.Event()

    def start(self, token: torch.Tensor) -> None:
        if self.cuda:
            self.buffer.copy_(token, non_blocking=True)
            self.ready.record()
        else:
            self.buffer = token

    def get(self) -> int:
        if self.cuda:
            self.ready.synchronize()
        return int(self.buffer)
