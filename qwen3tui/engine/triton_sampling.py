"""Triton kernel that picks the next token inside the CUDA decode graph (see `graph_sampler.py`).

`Sampler`'s torch operations between two graph replays cost more GPU time than the maths
needs: each is its own small kernel (argmax alone takes 8.6 us on an H200 for a 1.1 ms
step). This kernel does greedy or top-k sampling in one launch right after the output head.
The programs each take the top-k of one block of the logits and the last to finish takes
the top-k of theirs and writes the token where the next step's embedding reads it. Top-k is
k max reductions, not a sort: on an H200 a bitonic `tl.topk` of each 2,048-logit block and
of the candidates took 41 us for top-k 20 (greedy: 3.4 us).

Candidates are int64 keys: the logit's float32 bits made order-preserving as a signed
integer in the high half, `vocab - 1 - index` in the low half, so the largest key is the
largest logit and, among equal logits, the lowest index (as `torch.argmax` and `torch.topk`).
"""

from __future__ import annotations

import triton
import triton.language as tl

try:  # grid dependency control: Hopper and later; a no-op when launched without PDL
    from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait
except ImportError:  # pragma: no cover - older Triton
    gdc_launch_dependents = gdc_wait = None

NO_KEY = tl.constexpr(-(2**63))  # below every key: masked lanes


@triton.jit
def _keys(x, index, V):
    bits = x.to(tl.int32, bitcast=True)
    ordered = tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)
    return (ordered.to(tl.int64) << 32) | (V - 1 - index).to(tl.int64)


@triton.jit
def _key_value(key):
    ordered = (key >> 32).to(tl.int32)
    bits = tl.where(ordered >= 0, ordered, ordered ^ 0x7FFFFFFF)
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def _key_index(key, V):
    return V - 1 - (key & 0xFFFFFFFF)


@triton.jit
def _largest(keys, count, K: tl.constexpr):
    """The `count` (<= K) largest keys, largest first, in K slots (the rest NO_KEY): one max
    reduction each, much cheaper than sorting the block for Qwen's top-k of 20."""
    rank = tl.arange(0, K)
    top = tl.full([K], NO_KEY, tl.int64)
    for i in range(count):
        best = tl.max(keys, axis=0)
        top = tl.where(rank == i, best, top)
        keys = tl.where(keys == best, NO_KEY, keys)  # keys are distinct: their index is in them
    return top


@triton.jit
def uniform(STATE):
    """The reply's next uniform draw in [0, 1): Philox at (seed, draws so far)."""
    seed = tl.load(STATE)
    draw = tl.load(STATE + 1)
    return tl.rand(seed, draw)


@triton.jit
def next_uniform(STATE, OUT):
    """OUT = the uniform draw the next `sample` will make (tests check draws against it)."""
    tl.store(OUT, uniform(STATE))


@triton.jit
def sample(
    LOGITS, PARAMS, STATE, SEEN, PART, COUNTER, TOKEN, POS, MAILBOX, V,
    BLOCK: tl.constexpr, K: tl.constexpr, PENALTY: tl.constexpr, PARTS: tl.constexpr,
    PDL: tl.constexpr,
):  # fmt: skip
    """TOKEN = the next token from LOGITS (V,); POS += 1; MAILBOX[POS % 2] = the token too.

    K == 1: greedy (the largest logit). Otherwise K is a power of two >= top-k and the token
    is drawn like `Sampler`: the top-k logits over the temperature, softmax, then top-p
    (keep the smallest prefix whose mass reaches it) and min-p (keep those at least min-p
    times the first's probability), renormalised. PARAMS (float32): 1/temperature, top-p
    (> 1: off), min-p, top-k, presence penalty (PENALTY: subtracted from the logits of the
    tokens SEEN, uint8, first; the drawn token is marked there). STATE (int64): seed, draws so
    far (advanced here). PART holds PARTS x K keys; COUNTER counts finished programs (the
    last one sets it back to 0).
    MAILBOX (int64, 2) is pinned host memory on CUDA: the host reads the token there once the
    step is done, with no copy queued between two steps; the next step writes the other slot.
    """
    pid = tl.program_id(0)
    index = pid * BLOCK + tl.arange(0, BLOCK)
    ok = index < V
    if PDL:
        gdc_wait()
        gdc_launch_dependents()
    x = tl.load(LOGITS + index, mask=ok, other=0.0).to(tl.float32)
    if PENALTY:
        x -= tl.load(PARAMS + 4) * tl.load(SEEN + index, mask=ok, other=0).to(tl.float32)
    if K > 1:
        x = x * tl.load(PARAMS)
        top_k = tl.load(PARAMS + 3).to(tl.int32)
    keys = tl.where(ok, _keys(x, index, V), NO_KEY)
    if K == 1:
        tl.store(PART + pid, tl.max(keys, axis=0))
    else:
        tl.store(PART + pid * K + tl.arange(0, K), _largest(keys, top_k, K))
    tl.debug_barrier()  # every thread's candidates are written before the count says so
    done = tl.atomic_add(COUNTER, 1)  # acquire and release, GPU scope
    if done == tl.num_programs(0) - 1:
        tl.store(COUNTER, 0)  # ready for the next step
        slots = tl.arange(0, PARTS * K)
        part = tl.load(PART + slots, mask=slots < tl.num_programs(0) * K, other=NO_KEY)
        if K == 1:
            token = _key_index(tl.max(part, axis=0), V)
        else:
            top = _largest(part, top_k, K)
            rank = tl.arange(0, K)
            keep = (rank < top_k) & (top != NO_KEY)
            logit = tl.where(keep, _key_value(top), float("-inf"))  # NO_KEY reads as a NaN
            prob = tl.where(keep, tl.exp(logit - tl.max(logit, axis=0)), 0.0)
            prob = prob / tl.sum(prob, axis=0)
            before = tl.cumsum(prob, axis=0) - prob
            keep &= before < tl.load(PARAMS + 1)
            first = tl.max(prob, axis=0)
            keep &= prob >= tl.load(PARAMS + 2) * first
            kept = tl.where(keep, prob, 0.0)
            target = uniform(STATE) * tl.sum(kept, axis=0)
            # The first kept candidate whose running mass passes the draw.
            below = tl.sum((tl.cumsum(kept, axis=0) <= target).to(tl.int32), axis=0)
            last = tl.max(tl.where(keep, rank, 0), axis=0)
            choice = tl.minimum(below, last)
            token = tl.sum(tl.where(rank == choice, _key_index(top, V), 0), axis=0)
            tl.store(STATE + 1, tl.load(STATE + 1) + 1)
        pos = tl.load(POS) + 1
        tl.store(TOKEN, token)
        tl.store(POS, pos)
        tl.store(MAILBOX + pos % 2, token)
        if PENALTY:
            tl.store(SEEN + token, 1)
