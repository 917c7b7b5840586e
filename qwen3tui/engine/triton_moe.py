"""Triton kernels for a mixture-of-experts layer in a batch-1 decode step (Qwen3-MoE).

Three kernels run the token's k experts without the host:

- `router`: the router's one-row projection (RMSNorm in its prologue); the last program to
  finish ranks every expert's score (softmax and top-k over a few hundred values) and writes
  the k experts and their routing weights.
- `expert_gate_up`: program (row block, slot) computes those rows of the slot-th expert's
  SwiGLU, times its routing weight. Together the programs read the k experts' gate/up weights
  once: for Qwen3-30B-A3B the same 12,288 x 2,048 one-row matmul as a dense Qwen3-1.7B layer's.
- `expert_down`: each program sums its output rows over the k experts' down projections (the
  k experts' rows taken as one long row) and adds them into the residual stream: the k
  experts' down weights read once.

The experts' weights are read by device index: a CUDA graph of the step replays for any
routing.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .triton_kernels import _tile, _vector, _x_tile, gdc_launch_dependents, gdc_wait


@triton.jit
def _rms_inverse(X, cols, K, eps, BLOCK_K: tl.constexpr, EVEN: tl.constexpr):
    """1 / rms(X[:K]) (with eps), X read in tiles of BLOCK_K: RMSNorm's factor."""
    squares = tl.zeros([BLOCK_K], tl.float32)
    for k0 in range(0, K, BLOCK_K):
        xk = _vector(X, k0 + cols, K, EVEN)
        squares += xk * xk
    return tl.rsqrt(tl.sum(squares) / K + eps)


@triton.jit
def router(
    W,
    X,
    NORM_W,
    SCORES,
    COUNTER,
    IDS,
    WEIGHTS,
    E,
    K,
    eps,
    TOP_K: tl.constexpr,
    E_PAD: tl.constexpr,
    NORMALIZE: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    DEPTH: tl.constexpr,
    EVEN: tl.constexpr,
    PDL: tl.constexpr,
):
    """SCORES[e] = W[e] @ (RMSNorm(X) * NORM_W) for this program's experts e (DEPTH weight
    tiles fetched before waiting for the kernel before, as `gemv`'s); then the last
    program to finish (COUNTER, which it resets) writes the top-k experts, most probable
    first, to IDS and their routing weights to WEIGHTS: softmax over the E scores in fp32,
    divided by the k weights' sum with NORMALIZE.

    An expert's rank is how many experts come before it (more probable, or as probable and a
    lower index): a permutation, so each of the k slots gets exactly one expert."""
    rows = (tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    cols = tl.arange(0, BLOCK_K)
    row_ok = rows < E
    w_ptrs = W + rows[:, None] * K + cols[None, :]
    # The router's weights, DEPTH tiles before waiting.
    w = _tile(w_ptrs, row_ok, cols, K, EVEN)
    if DEPTH == 2:
        w2 = _tile(w_ptrs + BLOCK_K, row_ok, BLOCK_K + cols, K, EVEN)
    if PDL:
        gdc_wait()
        gdc_launch_dependents()
    inv = _rms_inverse(X, cols, K, eps, BLOCK_K, EVEN)
    xk = _x_tile(X, NORM_W, inv, cols, K, True, EVEN)
    acc = w.to(tl.float32) * xk[None, :]
    if DEPTH == 2:
        xk = _x_tile(X, NORM_W, inv, BLOCK_K + cols, K, True, EVEN)
        acc += w2.to(tl.float32) * xk[None, :]
    for k0 in range(DEPTH * BLOCK_K, K, BLOCK_K):
        w = _tile(w_ptrs + k0, row_ok, k0 + cols, K, EVEN)
        xk = _x_tile(X, NORM_W, inv, k0 + cols, K, True, EVEN)
        acc += w.to(tl.float32) * xk[None, :]
    tl.store(SCORES + rows, tl.sum(acc, axis=1), mask=row_ok)
    tl.debug_barrier()  # every thread's scores are written before the count says so
    done = tl.atomic_add(COUNTER, 1)  # acquire and release, GPU scope
    if done == tl.num_programs(0) - 1:
        tl.store(COUNTER, 0)  # ready for the next layer and step
        e = tl.arange(0, E_PAD)
        # Read past L1 (.cg): other multiprocessors wrote them.
        logits = tl.load(SCORES + e, mask=e < E, other=float("-inf"), cache_modifier=".cg")
        p = tl.exp(logits - tl.max(logits, axis=0))
        p = p / tl.sum(p, axis=0)
        # NaN (compares false to everything) ranks after every number, padding after all.
        p = tl.where(e < E, tl.where(p == p, p, -1.0), -2.0)
        ahead = (p[None, :] > p[:, None]) | ((p[None, :] == p[:, None]) & (e[None, :] < e[:, None]))
        rank = tl.sum(ahead.to(tl.int32), axis=1)
        chosen = rank < TOP_K
        weight = p
        if NORMALIZE:
            weight = p / tl.sum(tl.where(chosen, p, 0.0), axis=0)
        tl.store(IDS + rank, e, mask=chosen)
        tl.store(WEIGHTS + rank, weight, mask=chosen)


@triton.jit
def expert_gate_up(
    W,
    X,
    NORM_W,
    IDS,
    WEIGHTS,
    OUT,
    INTER,
    K,
    eps,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    EVEN: tl.constexpr,
    PDL: tl.constexpr,
):
    """OUT[slot * INTER + n] = WEIGHTS[slot] * silu(G[n] @ x) * (U[n] @ x) for rows n of this
    program, where expert IDS[slot]'s W[expert] (2 * INTER, K) holds G then U and x is
    RMSNorm(X) * NORM_W. EVEN: no masks (INTER and K multiples of the blocks)."""
    slot = tl.program_id(1)
    rows = (tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    cols = tl.arange(0, BLOCK_K)
    row_ok = rows < INTER
    if PDL:  # the routing comes from the kernel before: nothing to fetch earlier
        gdc_wait()
        gdc_launch_dependents()
    expert = tl.load(IDS + slot).to(tl.int64)
    weight = tl.load(WEIGHTS + slot)
    gate_ptrs = W + expert * 2 * INTER * K + rows[:, None] * K + cols[None, :]
    up_ptrs = gate_ptrs + INTER * K
    inv = _rms_inverse(X, cols, K, eps, BLOCK_K, EVEN)
    acc_gate = tl.zeros([BLOCK_N, BLOCK_K], tl.float32)
    acc_up = tl.zeros([BLOCK_N, BLOCK_K], tl.float32)
    for k0 in range(0, K, BLOCK_K):
        xk = _x_tile(X, NORM_W, inv, k0 + cols, K, True, EVEN)
        gate = _tile(gate_ptrs + k0, row_ok, k0 + cols, K, EVEN)
        up = _tile(up_ptrs + k0, row_ok, k0 + cols, K, EVEN)
        acc_gate += gate.to(tl.float32) * xk[None, :]
        acc_up += up.to(tl.float32) * xk[None, :]
    g = tl.sum(acc_gate, axis=1)
    y = g / (1.0 + tl.exp(-g)) * tl.sum(acc_up, axis=1) * weight
    tl.store(OUT + slot * INTER + rows, y, mask=row_ok)


@triton.jit
def _down_tile(W, IDS, rows, row_ok, c, N, INTER: tl.constexpr, TOP_K: tl.constexpr,
               EVEN: tl.constexpr, IDS_CACHE: tl.constexpr):  # fmt: skip
    """The down weights of rows `rows` at columns `c` of the k experts' one long row: column
    c is column c % INTER of expert IDS[c // INTER] (IDS read with cache modifier IDS_CACHE)."""
    slot = c // INTER
    if EVEN:
        expert = tl.load(IDS + slot, cache_modifier=IDS_CACHE).to(tl.int64)
    else:
        expert = tl.load(IDS + slot, mask=c < TOP_K * INTER, other=0, cache_modifier=IDS_CACHE).to(
            tl.int64
        )
    ptrs = W + expert[None, :] * N * INTER + rows[:, None] * INTER + (c - slot * INTER)[None, :]
    return _tile(ptrs, row_ok, c, TOP_K * INTER, EVEN)


@triton.jit
def expert_down(
    W,
    ACT,
    IDS,
    OUT,
    N,
    INTER: tl.constexpr,
    TOP_K: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    EVEN: tl.constexpr,
    PDL: tl.constexpr,
):
    """OUT[n] += sum over slots s of D[n] @ ACT[s * INTER:(s + 1) * INTER], D = W[IDS[s]]
    (N, INTER): the routed experts' down projections (their weights already in ACT), added
    into the residual stream OUT.

    The k experts' rows are one input of TOP_K * INTER columns, column c from expert
    IDS[c // INTER]: tiles of BLOCK_K columns cross experts, so each load is as wide as a
    dense projection's whatever INTER is (tiles of one expert's 768 columns, 256 at a time,
    kept each program's loads too small to fill the memory system: measured). EVEN: no masks
    (N and TOP_K * INTER multiples of the blocks)."""
    rows = (tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    cols = tl.arange(0, BLOCK_K)
    row_ok = rows < N
    # The routing is final before this kernel starts (the router finished before the gate/up
    # programs passed their wait, and those launch this kernel after it): the first tile's
    # experts, read from L2, and their weights are fetched before waiting.
    w = _down_tile(W, IDS, rows, row_ok, cols, N, INTER, TOP_K, EVEN, ".cg")
    if PDL:
        gdc_wait()
        gdc_launch_dependents()
    acc = w.to(tl.float32) * _vector(ACT, cols, TOP_K * INTER, EVEN)[None, :]
    for c0 in range(BLOCK_K, TOP_K * INTER, BLOCK_K):
        w = _down_tile(W, IDS, rows, row_ok, c0 + cols, N, INTER, TOP_K, EVEN, "")
        acc += w.to(tl.float32) * _vector(ACT, c0 + cols, TOP_K * INTER, EVEN)[None, :]
    y = tl.sum(acc, axis=1) + tl.load(OUT + rows, mask=row_ok, other=0.0).to(tl.float32)
    tl.store(OUT + rows, y.to(OUT.dtype.element_ty), mask=row_ok)
