"""The next token drawn inside the CUDA decode graph, as `Sampler` draws it.

Between two replays of the fast decode graph `Sampler`'s torch operations (argmax; or top-k,
softmax, cumsum, multinomial) and the copies of the token and position into the graph's
inputs each run as their own small kernel; on an H200 they cost 34 us a token beside a
1.12 ms step (`benchmarks/RESULTS.md`). With the draw in the graph (`triton_sampling.sample`)
one replay is a whole decode step: it reads the token and position the previous replay wrote.
It also writes the token into pinned host memory (`mailbox`), where the host reads it once
the step is done: a copy to the host queued between two replays cost ~10 us a token more.

The draws are those of `Sampler` (greedy; presence penalty, temperature, top-k, top-p,
min-p) from a Philox stream seeded by the sampler's seed, so the same seed gives the same reply
on one machine, though not the tokens `Sampler`'s own generator would draw. Top-k off or above
MAX_TOP_K stays with `Sampler`: its candidates are not a short list.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .kernel_build import launch
from .options import SamplingParams
from .sampler import Sampler

MAX_TOP_K = 64
BLOCK = 2048  # logits ranked per program: 75 programs for Qwen3's 151,936


class Kind(NamedTuple):
    """What a graph's draw is compiled for."""

    candidates: int  # a program's top-k slots, a power of two (1: greedy)
    penalty: bool  # a presence penalty: the draw reads and marks the tokens seen


COMMON_KINDS = (Kind(1, False), Kind(32, False))  # greedy, Qwen's top-k of 20: built early


def kind(params: SamplingParams) -> Kind | None:
    """The draw for `params`, or None where `Sampler` must draw (top-k off or above 64)."""
    penalty = params.presence_penalty != 0
    if params.temperature <= 0:
        return Kind(1, penalty)
    if 0 < params.top_k <= MAX_TOP_K:
        return Kind(max(2, 1 << (params.top_k - 1).bit_length()), penalty)
    return None


class GraphSampler:
    """Device buffers the sampling kernel reads and writes, fixed for the graphs' life."""

    def __init__(self, vocab: int, device: torch.device, pdl: bool) -> None:
        self.vocab, self.pdl = vocab, pdl
        self.programs = -(-vocab // BLOCK)
        self.parts = 1 << (self.programs - 1).bit_length()
        self.launch = {"launch_pdl": True} if pdl else {}
        # 1/temperature, top-p (above 1: off), min-p, top-k, presence penalty; then the seed
        # and draws so far; the tokens seen in the reply (shared with its Sampler).
        self.params = torch.zeros(5, device=device, dtype=torch.float32)
        self.state = torch.zeros(2, device=device, dtype=torch.int64)
        self.part = torch.empty(self.parts * MAX_TOP_K, device=device, dtype=torch.int64)
        self.counter = torch.zeros(1, device=device, dtype=torch.int32)
        self.seen = torch.zeros(vocab, device=device, dtype=torch.bool)
        # Staged in pinned memory: a copy from pageable memory would wait for the stream,
        # i.e. for the reply's first token, which the host is about to wait for anyway.
        pinned = device.type == "cuda"
        self.params_host = torch.zeros(5, dtype=torch.float32, pin_memory=pinned)
        self.state_host = torch.zeros(2, dtype=torch.int64, pin_memory=pinned)
        self.copied = torch.cuda.Event() if pinned else None  # the staged values were read
        # Where the kernel writes each drawn token for the host too, slot (its position % 2).
        self.mailbox = torch.zeros(2, dtype=torch.int64, pin_memory=pinned)
        self.drawing: Sampler | None = None
        self.warmed: set[Kind] = set()

    def begin(self, sampler: Sampler) -> None:
        """Draw for `sampler`'s reply from now on (its parameters, a stream from its seed)."""
        p = sampler.params
        top_p = p.top_p if p.top_p < 1.0 else 2.0
        inverse = 1.0 / p.temperature if p.temperature > 0 else 1.0
        if self.copied is not None:
            self.copied.synchronize()  # long done: the last reply's tokens came after them
        values = [inverse, top_p, p.min_p, float(p.top_k), p.presence_penalty]
        self.params_host.copy_(torch.tensor(values))
        self.state_host[0], self.state_host[1] = sampler.generator.initial_seed() & (2**63 - 1), 0
        self.params.copy_(self.params_host, non_blocking=True)
        self.state.copy_(self.state_host, non_blocking=True)
        if self.copied is not None:
            self.copied.record()
        if p.presence_penalty:  # one record of the tokens seen, whoever draws the next
            sampler.share_seen(self.seen)
        self.drawing = sampler

    def draw(self, logits: torch.Tensor, token: torch.Tensor, pos: torch.Tensor, k: Kind) -> None:
        """token = the next token from `logits`, pos += 1 (queued, graph-capturable)."""
        from . import triton_sampling

        launch(triton_sampling.sample, (self.programs,),
            logits, self.params, self.state, self.seen.view(torch.uint8), self.part, self.counter,
            token, pos, self.mailbox, self.vocab, BLOCK, k.candidates, k.penalty, self.parts,
            self.pdl, num_warps=4, **self.launch,
        )  # fmt: skip

    def warm(self, logits: torch.Tensor, k: Kind) -> None:
        """Compile (or load) the kernel for `k` by one launch on scratch outputs."""
        if k not in self.warmed:
            scratch = GraphSampler(self.vocab, logits.device, self.pdl)
            token = torch.zeros((1, 1), dtype=torch.long, device=logits.device)
            pos = torch.zeros((1,), dtype=torch.long, device=logits.device)
            scratch.draw(logits, token, pos, k)
            self.warmed.add(k)
