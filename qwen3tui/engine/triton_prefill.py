"""Triton kernels for the element-wise work and attention of a CUDA prefill chunk
(`fast_prefill.py`).

Between its matrix products a plain prefill layer launches about thirty small PyTorch kernels
(casts, norm statistics, RoPE's halves and concatenation, the cache writes, SiLU), each reading
and writing the whole chunk; at 128 tokens they take longer than the products. Three kernels
replace them, rounding where the plain modules round (to the activations' dtype after each
operation), so the results are the plain path's up to the order of the norm's sum:

- `rms_norm_rows`: a row's RMSNorm (fp32 statistics, rounded, then times the weight);
- `qk_norm_rope_cache`: each head's q or k norm and RoPE, q into its own buffer and k and v
  straight into the cache at their positions;
- `swiglu_rows`: silu(gate) * up;
- `causal_attention`: the chunk's queries over the cache, flash attention's algorithm, in the
  layout the o projection reads. PyTorch's flash attention (FA2, no Hopper instructions) ran
  at ~150 TFLOP/s on a 2,048-token chunk on an H200, the largest cost after the products.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _norm(x, w, inv, dtype: tl.constexpr):
    """RMSNorm's output as the module computes it: x * inv rounded, then times the weight."""
    return ((x * inv).to(dtype).to(tl.float32) * w).to(dtype).to(tl.float32)


@triton.jit
def rms_norm_rows(X, W, OUT, H, eps, BLOCK: tl.constexpr):
    """OUT[row] = RMSNorm(X[row]) * W, for the program's row."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    ok = cols < H
    x = tl.load(X + row * H + cols, mask=ok, other=0.0).to(tl.float32)
    w = tl.load(W + cols, mask=ok, other=0.0).to(tl.float32)
    inv = tl.rsqrt(tl.sum(x * x, axis=0) / H + eps)
    y = _norm(x, w, inv, OUT.dtype.element_ty)
    tl.store(OUT + row * H + cols, y.to(OUT.dtype.element_ty), mask=ok)


@triton.jit
def qk_norm_rope_cache(
    QKV,
    Q,
    KC,
    VC,
    COS,
    SIN,
    Q_NORM,
    K_NORM,
    POSITIONS,
    T,
    cache_stride,
    eps,
    N_HEADS: tl.constexpr,
    N_KV: tl.constexpr,
    HD: tl.constexpr,
    BLOCK_T: tl.constexpr,
):
    """Program (tokens tb * BLOCK_T.., head h) of the chunk's fused q/k/v rows QKV (T, (heads +
    2 kv) * HD): a query head's rope(norm(q)) goes to Q (T, heads, HD); a KV head's
    rope(norm(k)) and its v go to the caches KC/VC (kv, positions, HD; `cache_stride` apart)
    at POSITIONS[t]. A block of tokens a program: one (token, head) each left 49,152 programs
    of 128 values at 2,048 tokens, a quarter of the bandwidth (measured on an H200)."""
    t = tl.program_id(0).to(tl.int64) * BLOCK_T + tl.arange(0, BLOCK_T)
    h = tl.program_id(1)
    d = tl.arange(0, HD)
    half: tl.constexpr = HD // 2
    rot = (d + half) % HD
    ok = (t < T)[:, None]
    pos = tl.load(POSITIONS + t, mask=t < T, other=0)
    rows = QKV + t[:, None] * (N_HEADS + 2 * N_KV) * HD
    dtype = Q.dtype.element_ty
    is_q = h < N_HEADS
    norm_w = Q_NORM if is_q else K_NORM
    x = tl.load(rows + h * HD + d[None, :], mask=ok, other=0.0).to(tl.float32)
    x_rot = tl.load(rows + h * HD + rot[None, :], mask=ok, other=0.0).to(tl.float32)
    inv = tl.rsqrt(tl.sum(x * x, axis=1) / HD + eps)[:, None]
    n = _norm(x, tl.load(norm_w + d).to(tl.float32)[None, :], inv, dtype)
    n_rot = _norm(x_rot, tl.load(norm_w + rot).to(tl.float32)[None, :], inv, dtype)
    rotated = tl.where(d[None, :] < half, -n_rot, n_rot)
    at_pos = pos[:, None] * HD + d[None, :]
    cos = tl.load(COS + at_pos, mask=ok, other=0.0).to(tl.float32)
    sin = tl.load(SIN + at_pos, mask=ok, other=0.0).to(tl.float32)
    # x * cos + rotated * sin, each product and the sum rounded as apply_rope's tensors are
    y = (n * cos).to(dtype).to(tl.float32) + (rotated * sin).to(dtype).to(tl.float32)
    if is_q:
        tl.store(Q + (t[:, None] * N_HEADS + h) * HD + d[None, :], y.to(dtype), mask=ok)
    else:
        kv = (h - N_HEADS).to(tl.int64)
        at = kv * cache_stride + at_pos
        tl.store(KC + at, y.to(KC.dtype.element_ty), mask=ok)
        v = tl.load(rows + (N_HEADS + N_KV + kv) * HD + d[None, :], mask=ok, other=0.0)
        tl.store(VC + at, v.to(VC.dtype.element_ty), mask=ok)


@triton.jit
def swiglu_rows(GATE_UP, OUT, INNER, BLOCK: tl.constexpr):
    """OUT[row] = silu(gate) * up, where GATE_UP[row] holds gate then up (INNER each)."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    ok = cols < INNER
    dtype = OUT.dtype.element_ty
    gate = tl.load(GATE_UP + row * 2 * INNER + cols, mask=ok, other=0.0).to(tl.float32)
    up = tl.load(GATE_UP + row * 2 * INNER + INNER + cols, mask=ok, other=0.0).to(tl.float32)
    silu = (gate / (1.0 + tl.exp(-gate))).to(dtype).to(tl.float32)
    tl.store(OUT + row * INNER + cols, (silu * up).to(dtype), mask=ok)


@triton.jit
def causal_attention(
    Q,
    KC,
    VC,
    OUT,
    POSITIONS,
    T,
    cache_stride,
    scale,
    N_HEADS: tl.constexpr,
    GROUP: tl.constexpr,
    HD: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    IEEE: tl.constexpr,
):
    """Program (query block, head h): the chunk's queries Q (T, heads, HD) at the consecutive
    positions POSITIONS[0].. over the cached keys and values KC/VC (kv, positions, HD;
    `cache_stride` apart), causal (a query sees the keys up to its own position), into OUT
    (T, heads, HD). Flash attention's online softmax, in base 2; the probabilities rounded to
    the values' dtype for their product, as flash attention does. Key blocks below every
    query of the block skip the causal mask; the longest query blocks are started first."""
    block = tl.num_programs(0) - 1 - tl.program_id(0)
    h = tl.program_id(1)
    kv = (h // GROUP).to(tl.int64)
    rows = block * BLOCK_M + tl.arange(0, BLOCK_M)
    d = tl.arange(0, HD)
    n_range = tl.arange(0, BLOCK_N)
    row_ok = (rows < T)[:, None]
    start = tl.load(POSITIONS).to(tl.int32)
    q_pos = start + rows
    q = tl.load(Q + (rows[:, None] * N_HEADS + h) * HD + d[None, :], mask=row_ok, other=0.0)
    k_base = KC + kv * cache_stride
    v_base = VC + kv * cache_stride
    # Keys [0, lo) are seen by every query of the block; [lo, hi) need the mask.
    lo = (start + block * BLOCK_M + 1) // BLOCK_N * BLOCK_N
    hi = start + tl.minimum(block * BLOCK_M + BLOCK_M, T)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HD], tl.float32)
    qk_scale = scale * 1.4426950408889634  # log2(e): exp2 below
    for n0 in range(0, lo, BLOCK_N):
        acc, m_i, l_i = _attend_keys(
            acc, m_i, l_i, q, k_base, v_base, n0 + n_range, d, q_pos, hi, qk_scale, HD, False,
            IEEE,
        )  # fmt: skip
    for n0 in range(lo, hi, BLOCK_N):
        acc, m_i, l_i = _attend_keys(
            acc, m_i, l_i, q, k_base, v_base, n0 + n_range, d, q_pos, hi, qk_scale, HD, True,
            IEEE,
        )  # fmt: skip
    out = acc / l_i[:, None]
    tl.store(
        OUT + (rows[:, None] * N_HEADS + h) * HD + d[None, :],
        out.to(OUT.dtype.element_ty),
        mask=row_ok,
    )


@triton.jit
def _attend_keys(acc, m_i, l_i, q, k_base, v_base, n, d, q_pos, hi, qk_scale, HD: tl.constexpr,
                 MASKED: tl.constexpr, IEEE: tl.constexpr):  # fmt: skip
    """One block of keys n into the running (acc, max, sum) of causal_attention."""
    tile = n[:, None] * HD + d[None, :]
    if MASKED:
        keys = tl.load(k_base + tile, mask=(n < hi)[:, None], other=0.0)
        values = tl.load(v_base + tile, mask=(n < hi)[:, None], other=0.0)
    else:
        keys = tl.load(k_base + tile)
        values = tl.load(v_base + tile)
    if IEEE:
        s = tl.dot(q, tl.trans(keys), input_precision="ieee")
    else:
        s = tl.dot(q, tl.trans(keys))
    s = s * qk_scale
    if MASKED:
        s = tl.where(n[None, :] <= q_pos[:, None], s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, axis=1))
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, axis=1)
    if IEEE:
        pv = tl.dot(p, values, input_precision="ieee")
    else:
        pv = tl.dot(p.to(values.dtype), values)
    return acc * alpha[:, None] + pv, m_new, l_i
