"""A stand-in decoder for tests where exact token sequences matter: each forward call answers
with a one-hot logit row for the next scripted token, and records what it was fed."""

from __future__ import annotations

import torch

from qwen3tui.engine.kv_cache import KVCache


class ScriptedModel:
    """Always predicts the first scripted token not yet fed back to it."""

    def __init__(self, script: list[int], vocab: int) -> None:
        self.script = list(script)
        self.next = 0
        self.vocab = vocab
        self.fed: list[list[int]] = []
        self.rope_cos = torch.zeros(1)

    def __call__(self, ids: torch.Tensor, start: int, cache: KVCache, last_only: bool = True):
        self.fed.append(ids[0].tolist())
        for token in self.fed[-1]:
            if self.next < len(self.script) and token == self.script[self.next]:
                self.next += 1
        logits = torch.full((1, 1, self.vocab), -1e4)
        if self.next < len(self.script):
            logits[0, 0, self.script[self.next]] = 0.0
        return logits
