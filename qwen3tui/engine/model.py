"""The Qwen3 decoder as plain PyTorch modules.

Projections that read the same input are fused (q/k/v, gate/up): one matmul reads the
activations once, which matters at batch 1 where decode is bound by memory bandwidth.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .config import Qwen3Config
from .kv_cache import KVCache
from .moe import SparseMoeBlock
from .rope import apply_rope, rope_tables


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # fp32 statistics, cast back, then scale: the order the reference uses. F.rms_norm
        # computes in fp32 and rounds once to x's dtype (the same values as casting x to fp32
        # first) in one kernel on CUDA, where uncompiled graphs pay ~2 us a launch.
        return self.weight * F.rms_norm(x, self.weight.shape, eps=self.eps)


class AttentionInputs(nn.Module):
    """Norm, fused q/k/v projection, per-head q/k norms and RoPE: everything before the cache."""

    def __init__(self, config: Qwen3Config) -> None:
        super().__init__()
        self.n_heads = config.num_attention_heads
        self.n_kv = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.qkv_proj = nn.Linear(
            config.hidden_size, (self.n_heads + 2 * self.n_kv) * self.head_dim, bias=False
        )
        self.q_norm = RMSNorm(self.head_dim, config.rms_norm_eps)
        self.k_norm = RMSNorm(self.head_dim, config.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """x (b, t, hidden) -> q (b, heads, t, hd), k and v (b, kv_heads, t, hd)."""
        b, t, _ = x.shape
        hd = self.head_dim
        q, k, v = self.qkv_proj(self.norm(x)).split(
            [self.n_heads * hd, self.n_kv * hd, self.n_kv * hd], dim=-1
        )
        q = self.q_norm(q.view(b, t, self.n_heads, hd)).transpose(1, 2)
        k = self.k_norm(k.view(b, t, self.n_kv, hd)).transpose(1, 2)
        v = v.view(b, t, self.n_kv, hd).transpose(1, 2)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v


class LayerOutput(nn.Module):
    """Output projection and residual, then the SwiGLU MLP block and its residual."""

    def __init__(self, config: Qwen3Config) -> None:
        super().__init__()
        inner = config.num_attention_heads * config.head_dim
        self.o_proj = nn.Linear(inner, config.hidden_size, bias=False)
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.gate_up_proj = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """attended (b, heads, t, hd) -> the layer's output (b, t, hidden)."""
        b, h, t, hd = attended.shape
        x = x + self.o_proj(attended.transpose(1, 2).reshape(b, t, h * hd))
        gate, up = self.gate_up_proj(self.norm(x)).chunk(2, dim=-1)
        return x + self.down_proj(F.silu(gate) * up)


class MoeLayerOutput(nn.Module):
    """LayerOutput with a mixture of experts (engine/moe.py) in place of the MLP: the sparse
    layers of Qwen3-MoE."""

    def __init__(self, config: Qwen3Config) -> None:
        super().__init__()
        inner = config.num_attention_heads * config.head_dim
        self.o_proj = nn.Linear(inner, config.hidden_size, bias=False)
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.moe = SparseMoeBlock(config)

    def forward(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        b, h, t, hd = attended.shape
        x = x + self.o_proj(attended.transpose(1, 2).reshape(b, t, h * hd))
        return x + self.moe(self.norm(x))


# Up to this many queries attend as grouped matmuls (decode steps, short follow-up prompts);
# longer chunks use fused SDPA, whose scores never exist in memory.
GROUPED_MAX_QUERIES = 64


def grouped_attention(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """Attention of a few query positions over the cache, as two matmuls.

    The query heads sharing a KV head become rows of one product, so K/V are read once and
    never copied or expanded (SDPA's masked GQA fallback expands them); matmuls also spread a
    long cache over the whole GPU where fused kernels give each head one block. Scores are
    softmaxed in fp32, as the reference does. `mask` is (t, kv_len) or (1, kv_len), True = see.
    """
    b, h, t, hd = q.shape
    n_kv = keys.shape[1]
    group = h // n_kv
    grouped = (q * hd**-0.5).reshape(b, n_kv, group * t, hd)
    scores = torch.matmul(grouped, keys.transpose(-1, -2))
    if mask is not None:
        scores = torch.where(mask, scores.view(b, n_kv, group, t, -1), float("-inf"))
        scores = scores.view(b, n_kv, group * t, -1)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(values.dtype)
    return torch.matmul(probs, values).view(b, h, t, hd)


def flash_cache_attention(
    q: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    used: torch.Tensor,
    offsets: tuple[torch.Tensor, torch.Tensor],
    max_keys: int,
) -> torch.Tensor:
    """Queries (1, heads, t, hd) over the first `used` cached positions through flash
    attention's variable-length kernel (CUDA, fp16/bf16): causal, aligned to the end of those
    keys, which are read once and, for a long cache, split across the GPU.

    `used` is a (1,) int32 device tensor, so one CUDA graph serves every length; `max_keys`
    is the bound the kernel plans its split for. keys/values are the layer's whole cache
    (1, kv_heads, max_tokens, hd), read as (tokens, heads, hd); `offsets` are the cumulative
    query offsets [0, t] and key offsets [0, max_tokens], int32.
    """
    _, h, t, hd = q.shape
    query_offsets, key_offsets = offsets
    out = torch.ops.aten._flash_attention_forward(
        q[0].transpose(0, 1),
        keys[0].transpose(0, 1),
        values[0].transpose(0, 1),
        query_offsets,
        key_offsets,
        t,
        max_keys,
        0.0,
        t > 1,  # one query sees every used key
        False,
        scale=hd**-0.5,
        seqused_k=used,
    )[0]
    return out.view(1, t, h, hd).transpose(1, 2)


def chunk_attention(
    q: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    positions: torch.Tensor,
    query_offsets: torch.Tensor,
    key_offsets: torch.Tensor,
    flash: bool,
) -> torch.Tensor:
    """A chunk of queries at consecutive device `positions` over the whole cache, causal.

    With `flash` (CUDA, fp16/bf16) the variable-length kernel reads only the filled keys, its
    causal mask aligned to their end; otherwise a mask over the whole cache (tests, float32).
    `query_offsets` = [0, chunk length], `key_offsets` = [0, cache capacity], int32.
    """
    if not flash:
        mask = torch.arange(keys.shape[2], device=q.device) <= positions[:, None]
        return grouped_attention(q, keys, values, mask)
    used = (positions[-1:] + 1).to(torch.int32)
    return flash_cache_attention(q, keys, values, used, (query_offsets, key_offsets), keys.shape[2])


class DecoderLayer(nn.Module):
    def __init__(self, config: Qwen3Config, layer: int) -> None:
        super().__init__()
        self.index = layer
        self.inputs = AttentionInputs(config)
        sparse = config.is_sparse_layer(layer)
        self.output = MoeLayerOutput(config) if sparse else LayerOutput(config)
        # MPS has had bugs in grouped-query SDPA; prefill expands K/V there instead.
        self.native_gqa = True
        # Grouped matmuls beat SDPA on CUDA (long caches, masked chunks); on the CPU, SDPA's
        # fused kernel is faster (measured), so weights.load_model sets this per device.
        self.matmul_attention = False
        # CUDA in fp16/bf16 (set at load): flash kernels for chunks after cached tokens.
        self.flash = False

    def attend(self, q, k, v, cache: KVCache, pos, kv_len: int, mask):
        keys, values = cache.store(self.index, pos, k, v, kv_len)
        t = q.shape[2]
        if self.matmul_attention and (t == 1 or (mask is not None and t <= GROUPED_MAX_QUERIES)):
            return grouped_attention(q, keys, values, mask)
        if self.flash and mask is not None:
            # A chunk after cached tokens is causal aligned to the end of the keys: flash
            # attention does that natively (no mask, no expanded K/V). Imported here: the
            # module imports torch._dynamo, 1.5 s of every launch on machines without flash.
            from torch.nn.attention.bias import causal_lower_right

            causal = causal_lower_right(t, keys.shape[2])
            return F.scaled_dot_product_attention(
                q, keys, values, attn_mask=causal, enable_gqa=True
            )
        if t == 1:
            # One query per head: the heads sharing a KV head become rows of one SDPA call.
            b, h, _, hd = q.shape
            grouped = q.reshape(b, keys.shape[1], h // keys.shape[1], hd)
            out = F.scaled_dot_product_attention(grouped, keys, values, attn_mask=mask)
            return out.view(b, h, 1, hd)
        if self.native_gqa:
            return F.scaled_dot_product_attention(
                q, keys, values, attn_mask=mask, is_causal=mask is None, enable_gqa=True
            )
        group = q.shape[1] // keys.shape[1]
        return F.scaled_dot_product_attention(
            q,
            keys.repeat_interleave(group, dim=1),
            values.repeat_interleave(group, dim=1),
            attn_mask=mask,
            is_causal=mask is None,
        )

    def prefill_chunk(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: KVCache,
        positions: torch.Tensor,
        query_offsets: torch.Tensor,
    ) -> torch.Tensor:
        """A chunk at device `positions`: no host value involved, for CUDA graph capture."""
        q, k, v = self.inputs(x, cos, sin)
        keys, values = cache.keys[self.index], cache.values[self.index]
        keys.index_copy_(2, positions, k)
        values.index_copy_(2, positions, v)
        key_offsets = cache.flash_offsets[1]
        attended = chunk_attention(
            q, keys, values, positions, query_offsets, key_offsets, self.flash
        )
        return self.output(x, attended)

    def forward(self, x, cos, sin, cache, pos, kv_len, mask):
        q, k, v = self.inputs(x, cos, sin)
        return self.output(x, self.attend(q, k, v, cache, pos, kv_len, mask))


class Qwen3(nn.Module):
    def __init__(self, config: Qwen3Config, max_positions: int) -> None:
        super().__init__()
        self.config = config
        # No random init: weights are loaded. (nn.Embedding's normal_ on the meta device, where
        # the loader builds the model, imports torch._dynamo: 1.6 s of every launch.)
        table = torch.empty(config.vocab_size, config.hidden_size)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, _weight=table)
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

    def logits(self, normed: torch.Tensor) -> torch.Tensor:
        """The output head over final-normed hidden states (..., hidden) -> (..., vocab)."""
        return (
            self.lm_head(normed)
            if self.lm_head is not None
            else F.linear(normed, self.output_weight())
        )

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

    def prefill_chunk(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        last: torch.Tensor,
        cache: KVCache,
        query_offsets: torch.Tensor,
    ) -> torch.Tensor:
        """Logits (vocab,) of row `last` (a (1,) device index) of the chunk `ids` (1, T) at the
        consecutive device `positions` (T,); its K/V go to the cache.

        No host value is involved, so one CUDA graph per chunk length serves every start. A
        shorter chunk is padded at its end: the padding's K/V land past the real tokens,
        where the next tokens overwrite them before anything reads them, and causal
        attention keeps them out of the real rows. `query_offsets` = [0, T] (int32).
        """
        cos = self.rope_cos.index_select(0, positions)
        sin = self.rope_sin.index_select(0, positions)
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer.prefill_chunk(x, cos, sin, cache, positions, query_offsets)
        return self.logits(self.norm(x.index_select(1, last)))[0, -1]

    def _run(self, ids, cos, sin, cache, pos, kv_len, mask, last_only) -> torch.Tensor:
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, cos, sin, cache, pos, kv_len, mask)
        if last_only:
            x = x[:, -1:]
        return self.logits(self.norm(x))


def layer_projections(model: Qwen3) -> Iterator[tuple[nn.Module, str]]:
    """(owner, attribute name) of every layer's projection: what load-time rewrites replace.
    A mixture of experts' router and experts are not among them (see moe.py)."""
    for layer in model.layers:
        yield layer.inputs, "qkv_proj"
        yield layer.output, "o_proj"
        if isinstance(layer.output, LayerOutput):
            yield layer.output, "gate_up_proj"
            yield layer.output, "down_proj"
