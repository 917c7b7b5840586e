"""The Qwen3 decoder as plain PyTorch modules.

Projections that read the same input are fused (q/k/v, gate/up): one matmul reads the
activations once, which matters at batch 1 where decode is bound by memory bandwidth.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import Qwen3Config
from .kv_cache import KVCache
from .rope import apply_rope, rope_tables


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # fp32 statistics, cast back, then scale: the order the reference uses.
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class Attention(nn.Module):
    def __init__(self, config: Qwen3Config, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.n_heads = config.num_attention_heads
        self.n_kv = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.qkv_proj = nn.Linear(
            config.hidden_size, (self.n_heads + 2 * self.n_kv) * self.head_dim, bias=False
        )
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, config.hidden_size, bias=False)
        self.q_norm = RMSNorm(self.head_dim, config.rms_norm_eps)
        self.k_norm = RMSNorm(self.head_dim, config.rms_norm_eps)
        # MPS has had bugs in grouped-query SDPA; prefill expands K/V there instead.
        self.native_gqa = True

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: KVCache,
        pos: int | torch.Tensor,
        kv_len: int,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv_proj(x).split(
            [self.n_heads * self.head_dim, self.n_kv * self.head_dim, self.n_kv * self.head_dim],
            dim=-1,
        )
        q = self.q_norm(q.view(b, t, self.n_heads, self.head_dim)).transpose(1, 2)
        k = self.k_norm(k.view(b, t, self.n_kv, self.head_dim)).transpose(1, 2)
        v = v.view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        keys, values = cache.store(self.layer, pos, k, v, kv_len)
        if t == 1:
            # One query per head: the query heads sharing a KV head become rows of one
            # attention over that head's keys. Plain SDPA on every backend, K/V never copied.
            group = self.n_heads // self.n_kv
            out = F.scaled_dot_product_attention(
                q.view(b, self.n_kv, group, self.head_dim), keys, values, attn_mask=mask
            ).view(b, self.n_heads, 1, self.head_dim)
        elif self.native_gqa:
            out = F.scaled_dot_product_attention(
                q, keys, values, attn_mask=mask, is_causal=mask is None, enable_gqa=True
            )
        else:
            group = self.n_heads // self.n_kv
            out = F.scaled_dot_product_attention(
                q,
                keys.repeat_interleave(group, dim=1),
                values.repeat_interleave(group, dim=1),
                attn_mask=mask,
                is_causal=mask is None,
            )
        return self.o_proj(out.transpose(1, 2).reshape(b, t, self.n_heads * self.head_dim))


class MLP(nn.Module):
    def __init__(self, config: Qwen3Config) -> None:
        super().__init__()
        self.gate_up_proj = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class DecoderLayer(nn.Module):
    def __init__(self, config: Qwen3Config, layer: int) -> None:
        super().__init__()
        self.input_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.attn = Attention(config, layer)
        self.post_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, cache, pos, kv_len, mask):
        x = x + self.attn(self.input_norm(x), cos, sin, cache, pos, kv_len, mask)
        return x + self.mlp(self.post_norm(x))


class Qwen3(nn.Module):
    def __init__(self, config: Qwen3Config, max_positions: int) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            DecoderLayer(config, i) for i in range(config.num_hidden_layers)
        )
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        if config.tie_word_embeddings:
            self.lm_head = None
        else:
            self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.max_positions = max_positions
        self.rope_cos: torch.Tensor | None = None
        self.rope_sin: torch.Tensor | None = None

    def setup_rope(self, device: torch.device, dtype: torch.dtype) -> None:
        """cos/sin tables built in fp32, kept in the compute dtype (as the reference casts)."""
        cos, sin = rope_tables(self.config, self.max_positions)
        self.rope_cos, self.rope_sin = cos.to(device, dtype), sin.to(device, dtype)

    def output_weight(self) -> torch.Tensor:
        return self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight


    def forward(
        self, ids: torch.Tensor, start: int, cache: KVCache, last_only: bool = True
    ) -> torch.Tensor:
        """Logits for `ids` (1, T) at positions start..start+T-1; their K/V go to `cache`.

        Returns (1, 1, vocab) for the last position, or (1, T, vocab) with last_only=False.
        Attention reads only the filled part of the cache.
        """
        t = ids.shape[1]
        end = start + t
        if end > cache.max_tokens:
            raise ValueError(f"positions up to {end} exceed the cache of {cache.max_tokens}")
        mask = None
        if t > 1 and start > 0:
            # A chunk after cached tokens: query i sees every cached key and keys up to itself.
            q_pos = torch.arange(start, end, device=ids.device)[:, None]
            mask = torch.arange(end, device=ids.device)[None, :] <= q_pos
        cos, sin = self.rope_cos[start:end], self.rope_sin[start:end]
        return self._run(ids, cos, sin, cache, start, end, mask, last_only)

    def decode_step(
        self, token: torch.Tensor, pos: torch.Tensor, cache: KVCache, kv_len: int
    ) -> torch.Tensor:
        """Logits (1, 1, vocab) for one token (1, 1) at position `pos`, a (1,) device tensor.

        Nothing here depends on the position's value on the host, so a CUDA graph can replay
        it for every position below `kv_len`: keys past `pos` are masked out.
        """
        cos, sin = self.rope_cos.index_select(0, pos), self.rope_sin.index_select(0, pos)
        mask = (torch.arange(kv_len, device=pos.device) <= pos).view(1, kv_len)
        return self._run(token, cos, sin, cache, pos, kv_len, mask, True)

    def _run(self, ids, cos, sin, cache, pos, kv_len, mask, last_only) -> torch.Tensor:
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, cos, sin, cache, pos, kv_len, mask)
        if last_only:
            x = x[:, -1:]
        x = self.norm(x)
        return self.lm_head(x) if self.lm_head is not None else F.linear(x, self.output_weight())
