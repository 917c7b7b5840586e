"""Pick the next token from logits: presence penalty, temperature, top-k, top-p, min-p.

Everything stays on the logits' device; the caller does the one host sync (`.item()`). Each
draw counts as seen for the presence penalty of the draws after it.
"""

from __future__ import annotations

import torch

from .options import SamplingParams


class Sampler:
    def __init__(self, params: SamplingParams, vocab_size: int, device: torch.device) -> None:
        self.params = params
        self.generator = torch.Generator(device=device)
        if params.seed is not None:
            self.generator.manual_seed(params.seed)
        else:
            self.generator.seed()
        # Tokens already generated in this reply, for the presence penalty.
        self.seen = torch.zeros(vocab_size, dtype=torch.bool, device=device)

    def observe(self, token: torch.Tensor | int) -> None:
        """Count `token` as generated in this reply (each draw counts its own)."""
        if self.params.presence_penalty:
            index = torch.as_tensor(token, device=self.seen.device).view(1)
            self.seen.index_fill_(0, index, True)  # no host sync for a device token

    def share_seen(self, seen: torch.Tensor) -> None:
        """Keep the tokens seen in `seen` from now on: the CUDA graph's draw
        (graph_sampler) reads and marks the same buffer."""
        seen.copy_(self.seen)
        self.seen = seen

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """logits: (vocab,) -> a 0-d int64 tensor."""
        p = self.params
        logits = logits.float()
        if p.presence_penalty:
            logits = logits - p.presence_penalty * self.seen.to(logits.dtype)
        if p.temperature <= 0:
            return self._drawn(torch.argmax(logits))
        logits = logits / p.temperature
        if 0 < p.top_k < logits.shape[-1]:
            values, indices = torch.topk(logits, p.top_k)  # sorted, largest first
        else:
            values, indices = torch.sort(logits, descending=True)
        probs = torch.softmax(values, dim=-1)
        keep = torch.ones_like(probs, dtype=torch.bool)
        if p.top_p < 1.0:
            # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
            before = torch.cumsum(probs, dim=-1) - probs
            keep &= before < p.top_p
        if p.min_p > 0:
            keep &= probs >= p.min_p * probs[0]
        probs = torch.where(keep, probs, torch.zeros_like(probs))
        choice = torch.multinomial(probs / probs.sum(), 1, generator=self.generator)
        return self._drawn(indices[choice[0]])

    def _drawn(self, token: torch.Tensor) -> torch.Tensor:
        self.observe(token)
        return token
