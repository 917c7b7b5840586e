"""Triton kernels for one batch-1 decode step (CUDA; the Triton interpreter runs them on the CPU).

At batch 1 a step reads every weight once, so it runs at the speed its projections stream
weights, plus what each extra kernel costs. These kernels fold the small element-wise work
into the projections around it:

- `gemv`: one-row matmul y = W @ x; optionally RMSNorm(x) in its prologue, SwiGLU of the gate
  and up halves in its epilogue, or the residual added into its output in place. W may be
  float8 (e4m3) with a float32 scale per block (Qwen's FP8 checkpoints): each weight is
  converted in registers and the block's scale folded into x, so a step reads one byte a weight.
- `attention`: one query per head over the cache, split along the cache (flash decoding);
  q/k norms, RoPE and the cache write of the new position happen inside it, and the last
  split to finish merges the splits.

With programmatic dependent launch (`PDL`) each kernel is launched while the one before it
still runs, and streams the weights it needs before waiting for that kernel's output.
"""

from __future__ import annotations

import triton
import triton.language as tl

try:  # grid dependency control: Hopper and later; a no-op when launched without PDL
    from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait
except ImportError:  # pragma: no cover - older Triton
    gdc_launch_dependents = gdc_wait = None


@triton.jit
def _tile(ptrs, row_ok, cols, K, EVEN: tl.constexpr):
    if EVEN:
        tile = tl.load(ptrs)
    else:
        tile = tl.load(ptrs, mask=row_ok[:, None] & (cols[None, :] < K), other=0.0)
    return tile


@triton.jit
def _vector(ptr, cols, K, EVEN: tl.constexpr):
    if EVEN:
        v = tl.load(ptr + cols)
    else:
        v = tl.load(ptr + cols, mask=cols < K, other=0.0)
    return v.to(tl.float32)


@triton.jit
def _scaled(x, S_ROW, cols, K, SB_K: tl.constexpr, EVEN: tl.constexpr):
    """x[k] * the scale of column k's block, in the scale row S_ROW points to."""
    if EVEN:
        s = tl.load(S_ROW + cols // SB_K)
    else:
        s = tl.load(S_ROW + cols // SB_K, mask=cols < K, other=0.0)
    return x * s


# f16: x * scale is multiplied by F16_ROOM / (max |x * scale| * K steps) before it is rounded
# to fp16, so no fp16 sum can overflow: |acc| <= steps * 448 * F16_ROOM / steps = 28,672 <
# 65,504 whatever the activations' magnitude; the factor is divided out of the fp32 row sum.
F16_ROOM = tl.constexpr(64.0)


@triton.jit
def _fp8_step(acc, w, x, c, s_row, k0, K, BLOCK_K: tl.constexpr, SB_K: tl.constexpr,
              EVEN: tl.constexpr, MATH: tl.constexpr):  # fmt: skip
    """acc plus one K step of an FP8 tile w [BLOCK_N, BLOCK_K] against x (fp32, unscaled),
    in the FP8 math chosen (see `gemv`). c: the f16 math's factor."""
    cols = k0 + tl.arange(0, BLOCK_K)
    xs = _scaled(x, s_row, cols, K, SB_K, EVEN)
    if MATH == "f16":
        # one packed cvt and one packed fp16 FMA per two weights
        acc += w.to(tl.float16) * (xs * c).to(tl.float16)[None, :]
    else:  # "f32": fp8 -> fp16 -> fp32 (two cvts per weight) and one fp32 FMA
        acc += w.to(tl.float32) * xs[None, :]
    return acc


@triton.jit
def _fp8_acc(BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, MATH: tl.constexpr):
    if MATH == "f16":
        acc = tl.zeros([BLOCK_N, BLOCK_K], tl.float16)
    else:
        acc = tl.zeros([BLOCK_N, BLOCK_K], tl.float32)
    return acc


@triton.jit
def _x_tile(X, NORM_W, inv, cols, K, NORM: tl.constexpr, EVEN: tl.constexpr):
    """x[cols] in fp32: RMSNorm(X) * NORM_W with NORM (inv: 1 / rms), else X."""
    xk = _vector(X, cols, K, EVEN)
    if NORM:
        xk = xk * inv * _vector(NORM_W, cols, K, EVEN)
    return xk


@triton.jit
def _add_products(acc, w, xk, c, s_row, k0, K, BLOCK_K: tl.constexpr, SB_K: tl.constexpr,
                  EVEN: tl.constexpr, FP8: tl.constexpr, MATH: tl.constexpr):  # fmt: skip
    """acc plus the products of weight tile w (columns k0 on) with x's tile xk (see `gemv`)."""
    if FP8:
        acc = _fp8_step(acc, w, xk, c, s_row, k0, K, BLOCK_K, SB_K, EVEN, MATH)
    else:
        acc += w.to(tl.float32) * xk[None, :]
    return acc


@triton.jit
def gemv(
    W,
    X,
    NORM_W,
    OUT,
    S,
    S_COLS,
    N,
    K,
    UP,
    eps,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    DEPTH: tl.constexpr,
    NORM: tl.constexpr,
    SWIGLU: tl.constexpr,
    RESIDUAL: tl.constexpr,
    EVEN: tl.constexpr,
    PDL: tl.constexpr,
    FP8: tl.constexpr = False,
    SB_N: tl.constexpr = 128,
    SB_K: tl.constexpr = 128,
    FP8_MATH: tl.constexpr = "f32",
    EARLY: tl.constexpr = False,
):
    """OUT[n] (+)= sum_k W[n, k] * x[k] for rows n of this program, in fp32.

    NORM: x = RMSNorm(X) * NORM_W. SWIGLU: OUT[n] = silu(W[n] @ x) * (W[n + UP] @ x).
    RESIDUAL: OUT[n] += the product (OUT is the residual stream). EVEN: N and K are
    multiples of the blocks, so no masks. DEPTH (1, or 2 where K has two tiles or more):
    weight tiles fetched before waiting for the kernel before. EARLY (with PDL): the next
    kernel may launch before this one waits, not after (it still waits for all of this one).
    FP8: W[n, k] is scaled by S[n // SB_N, k // SB_K] (S_COLS scales a row); BLOCK_N divides
    SB_N and UP is a multiple of it, so a program's rows share one row of scales. FP8_MATH
    ("f32" unless FP8), how FP8 tiles are multiplied:
    - "f32": each weight converted to fp32, the scale applied to x (BLOCK_K products, not
      BLOCK_N x BLOCK_K), fp32 FMAs. Exact products.
    - "f16": weights converted to fp16 only, x * scale (times a factor that keeps every sum
      in fp16 range) rounded to fp16, fp16 FMAs across K; the row sums in fp32. Relative
      error 3e-4 to 2e-3, growing with the K steps (fp16 rounding), well below the FP8
      weights' own (~3e-2). Per weight: half a cvt and half an HFMA2, not f32's 2.5.
    """
    if PDL and EARLY:
        gdc_launch_dependents()
    rows = (tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    cols = tl.arange(0, BLOCK_K)
    row_ok = rows < N
    w_ptrs = W + rows[:, None] * K + cols[None, :]
    up_ptrs = W + (rows[:, None] + UP) * K + cols[None, :]
    # The first weight tiles do not depend on the previous kernel: fetch them before waiting.
    w = _tile(w_ptrs, row_ok, cols, K, EVEN)
    if SWIGLU:
        wu = _tile(up_ptrs, row_ok, cols, K, EVEN)
    if DEPTH == 2:
        w2 = _tile(w_ptrs + BLOCK_K, row_ok, BLOCK_K + cols, K, EVEN)
        if SWIGLU:
            wu2 = _tile(up_ptrs + BLOCK_K, row_ok, BLOCK_K + cols, K, EVEN)
    if PDL:
        gdc_wait()
        if not EARLY:
            gdc_launch_dependents()
    s_row = S
    s_up_row = S
    if FP8:
        first = tl.program_id(0) * BLOCK_N
        s_row = S + (first // SB_N).to(tl.int64) * S_COLS
        s_up_row = S + ((first + UP) // SB_N).to(tl.int64) * S_COLS
    inv = 1.0
    c = 1.0
    c_up = 1.0
    if NORM or FP8_MATH == "f16":
        squares = tl.zeros([BLOCK_K], tl.float32)
        peak = tl.zeros([BLOCK_K], tl.float32)
        peak_up = tl.zeros([BLOCK_K], tl.float32)
        for k0 in range(0, K, BLOCK_K):
            xk = _vector(X, k0 + cols, K, EVEN)
            squares += xk * xk
            if FP8_MATH == "f16":
                if NORM:
                    xk = xk * _vector(NORM_W, k0 + cols, K, EVEN)
                peak = tl.maximum(peak, tl.abs(_scaled(xk, s_row, k0 + cols, K, SB_K, EVEN)))
                if SWIGLU:
                    xu = _scaled(xk, s_up_row, k0 + cols, K, SB_K, EVEN)
                    peak_up = tl.maximum(peak_up, tl.abs(xu))
        if NORM:
            inv = tl.rsqrt(tl.sum(squares) / K + eps)
        if FP8_MATH == "f16":
            steps = tl.cdiv(K, BLOCK_K)
            c = F16_ROOM / tl.maximum(tl.max(peak) * inv * steps, 1e-30)
            c_up = F16_ROOM / tl.maximum(tl.max(peak_up) * inv * steps, 1e-30)
    xk = _x_tile(X, NORM_W, inv, cols, K, NORM, EVEN)
    if FP8:
        acc = _fp8_step(_fp8_acc(BLOCK_N, BLOCK_K, FP8_MATH), w, xk, c, s_row, 0, K,
                        BLOCK_K, SB_K, EVEN, FP8_MATH)  # fmt: skip
        if SWIGLU:
            acc_up = _fp8_step(_fp8_acc(BLOCK_N, BLOCK_K, FP8_MATH), wu, xk, c_up, s_up_row,
                               0, K, BLOCK_K, SB_K, EVEN, FP8_MATH)  # fmt: skip
    else:
        acc = w.to(tl.float32) * xk[None, :]
        if SWIGLU:
            acc_up = wu.to(tl.float32) * xk[None, :]
    if DEPTH == 2:  # the second tile, fetched before waiting
        xk = _x_tile(X, NORM_W, inv, BLOCK_K + cols, K, NORM, EVEN)
        acc = _add_products(acc, w2, xk, c, s_row, BLOCK_K, K, BLOCK_K, SB_K, EVEN, FP8, FP8_MATH)
        if SWIGLU:
            acc_up = _add_products(acc_up, wu2, xk, c_up, s_up_row, BLOCK_K, K, BLOCK_K, SB_K,
                                   EVEN, FP8, FP8_MATH)  # fmt: skip
    for k0 in range(DEPTH * BLOCK_K, K, BLOCK_K):
        w = _tile(w_ptrs + k0, row_ok, k0 + cols, K, EVEN)
        if SWIGLU:
            wu = _tile(up_ptrs + k0, row_ok, k0 + cols, K, EVEN)
        xk = _x_tile(X, NORM_W, inv, k0 + cols, K, NORM, EVEN)
        acc = _add_products(acc, w, xk, c, s_row, k0, K, BLOCK_K, SB_K, EVEN, FP8, FP8_MATH)
        if SWIGLU:
            acc_up = _add_products(acc_up, wu, xk, c_up, s_up_row, k0, K, BLOCK_K, SB_K, EVEN,
                                   FP8, FP8_MATH)  # fmt: skip
    y = tl.sum(acc.to(tl.float32), axis=1)
    if SWIGLU:
        y_up = tl.sum(acc_up.to(tl.float32), axis=1)
    if FP8_MATH == "f16":
        y = y / c
        if SWIGLU:
            y_up = y_up / c_up
    if SWIGLU:
        y = y / (1.0 + tl.exp(-y)) * y_up
    if RESIDUAL:
        y += tl.load(OUT + rows, mask=row_ok, other=0.0).to(tl.float32)
    tl.store(OUT + rows, y.to(OUT.dtype.element_ty), mask=row_ok)


@triton.jit(do_not_specialize=["split_len", "n_splits"])  # one compiled kernel for all windows
def attention(
    QKV,
    KC,
    VC,
    COS,
    SIN,
    Q_NORM,
    K_NORM,
    POS,
    PART_O,
    PART_ML,
    COUNTER,
    OUT,
    split_len,
    n_splits,
    cache_stride,
    eps,
    scale,
    N_HEADS: tl.constexpr,
    N_KV: tl.constexpr,
    HD: tl.constexpr,
    GROUP: tl.constexpr,
    GROUP_PAD: tl.constexpr,
    MAX_SPLITS: tl.constexpr,
    BLOCK_T: tl.constexpr,
    IEEE: tl.constexpr,
    PDL: tl.constexpr,
    MERGE_ROWS: tl.constexpr,
    MERGE_CHUNK: tl.constexpr,
    EARLY: tl.constexpr = False,
):
    """Program (kv head, split): the query heads sharing this KV head against cache positions
    [split * split_len, min(that + split_len, pos + 1)). The split holding `pos` normalizes
    and rotates the new key, writes it and the new value to the cache, and uses them directly.

    Each split writes its unnormalized output and the (max, sum) of its scores; the last
    split of a KV head to finish (a counter, reset by it) merges them into OUT.
    """
    if PDL and EARLY:  # the next kernel may launch now (it waits for all of this one)
        gdc_launch_dependents()
    kv = tl.program_id(0)
    split = tl.program_id(1)
    d = tl.arange(0, HD)
    half: tl.constexpr = HD // 2
    rot = (d + half) % HD
    sign = tl.where(d < half, -1.0, 1.0)
    g = tl.arange(0, GROUP_PAD)
    g_ok = g < GROUP
    heads = kv * GROUP + g
    t_range = tl.arange(0, BLOCK_T)
    # Before waiting for the q/k/v projection: the position (set before the step), and the
    # first tile of cached keys and values, which earlier steps wrote.
    pos = tl.load(POS).to(tl.int32)  # int32 throughout: loop bounds and offsets
    start = split * split_len
    end = tl.minimum(start + split_len, pos + 1)
    k_base = KC + kv.to(tl.int64) * cache_stride
    v_base = VC + kv.to(tl.int64) * cache_stride
    t = start + t_range
    tile = t[:, None] * HD + d[None, :]
    keys = tl.load(k_base + tile, mask=(t < end)[:, None], other=0.0)
    values = tl.load(v_base + tile, mask=(t < end)[:, None], other=0.0)
    # RMSNorm weight and rotation folded into two factors per dimension, for q and for k:
    # rope(norm(x)) = (x * a + x[rot] * b) / rms(x).
    cos = tl.load(COS + pos * HD + d).to(tl.float32)
    sin = tl.load(SIN + pos * HD + d).to(tl.float32)
    q_a = tl.load(Q_NORM + d).to(tl.float32) * cos
    q_b = tl.load(Q_NORM + rot).to(tl.float32) * sign * sin
    k_a = tl.load(K_NORM + d).to(tl.float32) * cos
    k_b = tl.load(K_NORM + rot).to(tl.float32) * sign * sin
    if PDL:
        gdc_wait()
        if not EARLY:
            gdc_launch_dependents()
    # Queries of the group (rows past GROUP are padding, zeros), the new key and value.
    q_ptrs = QKV + heads[:, None] * HD
    q = tl.load(q_ptrs + d[None, :], mask=g_ok[:, None], other=0.0).to(tl.float32)
    q_rot = tl.load(q_ptrs + rot[None, :], mask=g_ok[:, None], other=0.0).to(tl.float32)
    k_ptr = QKV + (N_HEADS + kv) * HD
    k = tl.load(k_ptr + d).to(tl.float32)
    k_rot = tl.load(k_ptr + rot).to(tl.float32)
    v_new = tl.load(QKV + (N_HEADS + N_KV + kv) * HD + d).to(VC.dtype.element_ty)
    q_scale = tl.rsqrt(tl.sum(q * q, axis=1) / HD + eps) * scale
    q = (q * q_a[None, :] + q_rot * q_b[None, :]) * q_scale[:, None]
    k_new = (k * k_a + k_rot * k_b) * tl.rsqrt(tl.sum(k * k) / HD + eps)
    k_new = k_new.to(KC.dtype.element_ty)  # as the cache holds it
    if (pos >= start) & (pos < start + split_len):
        tl.store(k_base + pos * HD + d, k_new)
        tl.store(v_base + pos * HD + d, v_new)
    m = tl.full([GROUP_PAD], float("-inf"), tl.float32)
    total = tl.zeros([GROUP_PAD], tl.float32)
    acc = tl.zeros([GROUP_PAD, HD], tl.float32)
    for t0 in range(start, end, BLOCK_T):
        t = t0 + t_range
        t_ok = t < end
        is_new = (t == pos)[:, None]
        keys = tl.where(is_new, k_new[None, :], keys)
        values = tl.where(is_new, v_new[None, :], values)
        if IEEE:
            scores = tl.dot(q, tl.trans(keys), input_precision="ieee")
        else:
            scores = tl.dot(q.to(keys.dtype), tl.trans(keys))
        scores = tl.where(t_ok[None, :], scores, float("-inf"))
        m_new = tl.maximum(m, tl.max(scores, axis=1))
        alpha = tl.exp(m - m_new)
        p = tl.exp(scores - m_new[:, None])
        total = total * alpha + tl.sum(p, axis=1)
        if IEEE:
            pv = tl.dot(p, values, input_precision="ieee")
        else:
            pv = tl.dot(p.to(values.dtype), values)
        acc = acc * alpha[:, None] + pv
        m = m_new
        # The next tile, loaded while this one's results are still being used.
        t_next = t + BLOCK_T
        tile = t_next[:, None] * HD + d[None, :]
        keys = tl.load(k_base + tile, mask=(t_next < end)[:, None], other=0.0)
        values = tl.load(v_base + tile, mask=(t_next < end)[:, None], other=0.0)
    if n_splits == 1:
        out = acc / total[:, None]
        tl.store(OUT + heads[:, None] * HD + d[None, :], out, mask=g_ok[:, None])
    else:
        slot = heads * MAX_SPLITS + split
        tl.store(PART_O + slot[:, None] * HD + d[None, :], acc, mask=g_ok[:, None])
        tl.store(PART_ML + slot * 2, m, mask=g_ok)
        tl.store(PART_ML + slot * 2 + 1, total, mask=g_ok)
        tl.debug_barrier()  # every thread's partials are written before the count says so
        done = tl.atomic_add(COUNTER + kv, 1)  # acquire and release, GPU scope
        if done == n_splits - 1:
            tl.store(COUNTER + kv, 0)  # ready for the next layer and step
            _merge_splits(
                PART_O, PART_ML, OUT, kv, n_splits, HD, GROUP, MAX_SPLITS, MERGE_ROWS, MERGE_CHUNK
            )  # fmt: skip


@triton.jit
def _merge_splits(PART_O, PART_ML, OUT, kv, n_splits, HD: tl.constexpr, GROUP: tl.constexpr,
                  MAX_SPLITS: tl.constexpr, ROWS: tl.constexpr, CHUNK: tl.constexpr):  # fmt: skip
    """OUT[head] = the softmax-weighted merge of the head's splits, for the group's heads
    (ROWS: GROUP padded to a power of two), all heads at once and CHUNK splits a load: each
    load is a round trip to L2 that the next waits for (.cg: other multiprocessors wrote the
    partials), so one per head and split, as this merged before, took ~10 us a layer for
    Qwen3-30B-A3B's 8 query heads a KV head (measured)."""
    g = tl.arange(0, ROWS)
    d = tl.arange(0, HD)
    g_ok = g < GROUP
    s = tl.arange(0, MAX_SPLITS)
    slot = (kv * GROUP + g)[:, None] * MAX_SPLITS + s[None, :]
    ok = g_ok[:, None] & (s < n_splits)[None, :]
    m = tl.load(PART_ML + slot * 2, mask=ok, other=float("-inf"), cache_modifier=".cg")
    total = tl.load(PART_ML + slot * 2 + 1, mask=ok, other=0.0, cache_modifier=".cg")
    # Splits past the position have m = -inf: weight 0. (Padding rows are never stored.)
    m_max = tl.max(m, axis=1)
    denominator = tl.sum(tl.exp(m - m_max[:, None]) * total, axis=1)
    acc = tl.zeros([ROWS, HD], tl.float32)
    c = tl.arange(0, CHUNK)
    for s0 in range(0, n_splits, CHUNK):
        chunk = (kv * GROUP + g)[:, None] * MAX_SPLITS + (s0 + c)[None, :]
        chunk_ok = g_ok[:, None] & (s0 + c < n_splits)[None, :]
        m_c = tl.load(PART_ML + chunk * 2, mask=chunk_ok, other=float("-inf"), cache_modifier=".cg")
        parts = tl.load(
            PART_O + chunk[:, :, None] * HD + d[None, None, :],
            mask=chunk_ok[:, :, None],
            other=0.0,
            cache_modifier=".cg",
        )
        weight = tl.exp(m_c - m_max[:, None])
        acc += tl.sum(weight[:, :, None] * parts, axis=1)
    out = acc / denominator[:, None]
    heads = kv * GROUP + g
    tl.store(
        OUT + heads[:, None] * HD + d[None, :], out.to(OUT.dtype.element_ty), mask=g_ok[:, None]
    )


@triton.jit
def embed(TABLE, TOKEN, OUT, H, BLOCK: tl.constexpr, PDL: tl.constexpr):
    """OUT = TABLE[token] (the residual stream's start), in OUT's dtype."""
    cols = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    if PDL:
        gdc_wait()
        gdc_launch_dependents()
    token = tl.load(TOKEN).to(tl.int64)
    row = tl.load(TABLE + token * H + cols, mask=cols < H, other=0.0)
    tl.store(OUT + cols, row.to(OUT.dtype.element_ty), mask=cols < H)


@triton.jit
def dequantize_fp8(
    W, S, OUT, N, K, S_COLS, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    SB_N: tl.constexpr, SB_K: tl.constexpr,
):  # fmt: skip
    """OUT[n, k] = W[n, k] * S[n // SB_N, k // SB_K] in OUT's dtype, computed in fp32: the
    dequantized weight for a prefill's matrix product (one pass over the FP8 weight)."""
    rows = (tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    ok = (rows < N)[:, None] & (cols < K)[None, :]
    w = tl.load(W + rows[:, None] * K + cols[None, :], mask=ok, other=0.0).to(tl.float32)
    s = tl.load(S + (rows // SB_N)[:, None] * S_COLS + (cols // SB_K)[None, :], mask=ok, other=0.0)
    tl.store(OUT + rows[:, None] * K + cols[None, :], (w * s).to(OUT.dtype.element_ty), mask=ok)
