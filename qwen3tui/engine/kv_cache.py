"""A preallocated key/value cache that remembers which tokens it holds.

Knowing the token ids lets a new turn reuse the longest shared prefix and prefill only the rest.
"""

from __future__ import annotations

import torch

from .config import Qwen3Config


class KVCache:
    def __init__(
        self, config: Qwen3Config, max_tokens: int, device: torch.device, dtype: torch.dtype
    ) -> None:
        shape = (1, config.num_key_value_heads, max_tokens, config.head_dim)
        self.max_tokens = max_tokens
        self.keys = [
            torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.num_hidden_layers)
        ]
        self.values = [
            torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.num_hidden_layers)
        ]
        self.tokens: list[int] = []  # tokens[i] is the id whose K/V sit at position i
        # Flash attention's variable-length kernel reads this cache as one sequence of one
        # query: its cumulative query and key offsets, made once instead of every step.
        offsets = torch.tensor([0, 1, 0, max_tokens], dtype=torch.int32, device=device)
        self.flash_offsets = (offsets[:2], offsets[2:])

    @property
    def length(self) -> int:
        return len(self.tokens)

    @property
    def free(self) -> int:
        return self.max_tokens - self.length

    def store(
        self, layer: int, pos: int | torch.Tensor, k: torch.Tensor, v: torch.Tensor, kv_len: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k/v (1, heads, T, head_dim) at `pos` (an int, or a (1,) device tensor for graph
        replay); return the first `kv_len` positions for attention to read."""
        if isinstance(pos, int):
            self.keys[layer][:, :, pos : pos + k.shape[2]] = k
            self.values[layer][:, :, pos : pos + k.shape[2]] = v
        else:
            self.keys[layer].index_copy_(2, pos, k)
            self.values[layer].index_copy_(2, pos, v)
        return self.keys[layer][:, :, :kv_len], self.values[layer][:, :, :kv_len]

    def matching_prefix(self, ids: list[int]) -> int:
        """How many leading ids of `ids` already sit in the cache."""
        return common_prefix_length(self.tokens, ids)

    def reusable_prefix(self, ids: list[int]) -> int:
        """How many leading ids of a new prompt can be reused.

        At least one token is always left to prefill: its logits start the reply.
        """
        return min(self.matching_prefix(ids), len(ids) - 1)

    def truncate(self, length: int) -> None:
        # Positions past `length` are simply overwritten later; attention never reads them.
        del self.tokens[length:]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)


def common_prefix_length(a: list[int], b: list[int]) -> int:
    """How many leading ids `a` and `b` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
