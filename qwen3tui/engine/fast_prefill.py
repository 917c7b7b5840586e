"""CUDA's prefill chunk with its element-wise work and attention in Triton kernels (beside
`model.py`).

The same computation as `Qwen3.prefill_chunk`, the matrix products unchanged; the norms, q/k
norms + RoPE + cache writes, causal attention over the cache and SwiGLU run as the kernels of
`triton_prefill.py` (about eleven launches a layer instead of forty). Captured in the prefill
graphs of `decode_step.GraphedStep` once the kernels are built. Tests and
`benchmarks/check_fast_paths.py` hold it to the plain path.
"""

from __future__ import annotations

import torch

from .kernel_build import launch
from .kv_cache import KVCache
from .model import Qwen3


def supported(model: Qwen3) -> bool:
    """fp16/bf16 models with flash attention (CUDA), head sizes a kernel program holds whole
    (a power of two). float32 keeps the plain path: exact, where the norms' sums here are
    ordered differently."""
    hd = model.config.head_dim
    return all(layer.flash for layer in model.layers) and hd & (hd - 1) == 0


def prefill_chunk(
    model: Qwen3,
    ids: torch.Tensor,
    positions: torch.Tensor,
    last: torch.Tensor,
    cache: KVCache,
    query_offsets: torch.Tensor,
) -> torch.Tensor:
    """`Qwen3.prefill_chunk` (same arguments, same result) through the Triton kernels;
    `query_offsets` (for flash attention's call) is not needed here."""
    x = model.embed_tokens(ids)
    for layer in model.layers:
        x = _layer(model, layer, x, cache, positions)
    return model.logits(rms_norm(x.index_select(1, last), model.norm.weight, model.norm.eps))[0, -1]


def _layer(model: Qwen3, layer, x, cache: KVCache, positions) -> torch.Tensor:
    from . import triton_prefill as k

    inputs, out = layer.inputs, layer.output
    t = x.shape[1]
    h, n_kv, hd = inputs.n_heads, inputs.n_kv, inputs.head_dim
    qkv = inputs.qkv_proj(rms_norm(x, inputs.norm.weight, inputs.norm.eps))
    keys, values = cache.keys[layer.index], cache.values[layer.index]
    q = torch.empty((t, h, hd), device=x.device, dtype=x.dtype)
    block_t = 16
    launch(k.qk_norm_rope_cache, (-(-t // block_t), h + n_kv),
        qkv, q, keys, values, model.rope_cos, model.rope_sin, inputs.q_norm.weight,
        inputs.k_norm.weight, positions, t, keys.stride(1), inputs.q_norm.eps, h, n_kv, hd,
        block_t,
    )  # fmt: skip
    attended = attention(q, keys, values, positions, n_kv)
    x = x + out.o_proj(attended.view(1, t, h * hd))
    normed = rms_norm(x, out.norm.weight, out.norm.eps)
    moe = getattr(out, "moe", None)
    if moe is not None:
        return x + moe(normed)
    return x + out.down_proj(swiglu(out.gate_up_proj(normed)))


def attention(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, positions: torch.Tensor, n_kv: int
) -> torch.Tensor:
    """Causal attention of the chunk's queries q (t, heads, hd) at the consecutive device
    `positions` over the layer's cache (1, kv heads, capacity, hd), as (t, heads, hd): the
    layout the o projection reads, so no transposing copy."""
    from . import triton_prefill as k

    t, h, hd = q.shape
    out = torch.empty_like(q)
    # 64-query blocks below 512 tokens (more programs for a short chunk), else 128.
    block_m = 64 if t < 512 else 128
    launch(k.causal_attention, (-(-t // block_m), h),
        q, keys, values, out, positions, t, keys.stride(1), hd**-0.5, h, h // n_kv, hd,
        block_m, 64, q.dtype == torch.float32, num_warps=4 if block_m == 64 else 8,
        num_stages=3,
    )  # fmt: skip
    return out


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm of each row of x (..., hidden), as the module computes it."""
    from . import triton_prefill as k

    hidden = x.shape[-1]
    rows = x.numel() // hidden
    out = torch.empty_like(x)
    block = 1 << (hidden - 1).bit_length()
    launch(k.rms_norm_rows, (rows,), x, weight, out, hidden, eps, block,
           num_warps=8 if block >= 4096 else 4)  # fmt: skip
    return out


def swiglu(gate_up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up of gate_up (..., 2 * inner), as the plain path computes it."""
    from . import triton_prefill as k

    inner = gate_up.shape[-1] // 2
    rows = gate_up.numel() // (2 * inner)
    out = torch.empty((*gate_up.shape[:-1], inner), device=gate_up.device, dtype=gate_up.dtype)
    block = 1024
    launch(k.swiglu_rows, (rows, -(-inner // block)), gate_up, out, inner, block, num_warps=4)
    return out
