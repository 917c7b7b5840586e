"""The small ops of a CPU decode step as C calls (csrc/decode_ops.c): RMSNorm, the residual
add + RMSNorm, SwiGLU, a routed expert's weighted add, and a layer's attention step (q/k norm
+ RoPE, the KV-cache write and the attention of one query per head).

With every projection of a Qwen3-1.7B-shaped step replaced by a precomputed output, the step
still took about 8 ms on a 2-core Zen 4 machine: 113 RMSNorms of four tensor ops each (about
14 us apiece for 128 or 2,048 values), RoPE's six ops for q and for k, and 28 one-query SDPA
calls (60-110 us). Here each is one call (a norm 5 us, attention at 160 positions 21 us).
engine/cpu_decode.py strings them together with the projections' kernels.

The norms, the residual add and SwiGLU are the reference's (engine/model.py) bit for bit
(tested). SwiGLU does it without reproducing PyTorch's SiLU in C: it looks up PyTorch's own
bf16 SiLU of each of the 65,536 bf16 values (fp32 models keep PyTorch's SiLU). The attention
computes fp32 scores, softmax and sums, rounded once at the end (fp32: within 1e-5 relative of
SDPA; bf16: within half a bf16 step of the exact result, tested on GQA 16/8, 32/8, 40/8, 32/4
at lengths 1 to 4,097).

Built by native_build for the CPU it runs on; `load()` returns None where it cannot be had
(no compiler, not x86-64, QWEN3TUI_CPU_KERNELS=0) and decode steps run the reference modules.
"""

from __future__ import annotations

import ctypes

import torch
import torch.nn.functional as F

from .native_build import NativeKernel, NativeUnavailable, c_function, simd_name

SOURCE = "decode_ops.c"
# The bit-for-bit RMSNorm must round every product and sum on its own, as PyTorch does.
FLAGS = ("-ffp-contract=off",)
DTYPES = (torch.bfloat16, torch.float32)
MAX_GROUP, MAX_HEAD_DIM = 16, 256  # what the attention kernel is built for (decode_ops.c)
LANE_CANDIDATES = (8, 16, 4, 32)  # float vector widths PyTorch's CPU kernels may sum with
# SwiGLU rows whose halves are a multiple of this take the C call: PyTorch's SiLU then runs
# every value through its vector loop (a row's leftover values take a scalar exp that may
# round differently from the table's). Qwen3's intermediate sizes all are.
SWIGLU_MULTIPLE = 64


class DecodeOpsKernel:
    """The loaded library. Its C functions (`c_rmsnorm`, `c_add_rmsnorm`, `c_swiglu`,
    `c_scale_add`, `c_attend_step`) take raw pointers, for a caller that binds them once
    (cpu_decode); the methods of the same names take tensors and allocate their outputs."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        i64, ptr, f32, c_int = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float, ctypes.c_int
        self.simd = simd_name(lib.decode_ops_simd)
        norm = (i64, i64, f32, c_int, c_int)  # rows, dim, eps, bf16, lanes
        # Each returns 0, or -1 where it had no scratch memory.
        self.c_rmsnorm = c_function(lib.rmsnorm, c_int, *[ptr] * 3, *norm)
        self.c_add_rmsnorm = c_function(lib.add_rmsnorm, c_int, *[ptr] * 5, *norm)
        self.c_swiglu = c_function(lib.swiglu_bf16, None, ptr, ptr, ptr, i64, i64)
        self.c_scale_add = c_function(lib.scale_add, None, ptr, ptr, i64, c_int, f32, c_int)
        self.c_attend_step = c_function(
            lib.attend_step, c_int, *[ptr] * 6, *[i64] * 4, *[f32] * 3, c_int, c_int,
            ptr, ptr, i64, c_int,
        )  # fmt: skip
        self._attention = c_function(
            lib.attention_one_query, c_int, *[ptr] * 4, *[i64] * 5, f32, c_int, c_int
        )
        # PyTorch's own bf16 SiLU of every bf16 bit pattern (as fp32): SwiGLU in C looks it
        # up, so it is the reference's bit for bit (its SiLU's exp is not reproducible in C).
        self.silu_table = _bf16_silu_table()
        # The vector width of PyTorch's sum here, which fixes the order it adds in: found by
        # trying (it is not simply the CPU's: AVX-512 machines sum 8 floats at a time); None
        # if no width reproduces it, and then no decode step takes these norms.
        self.lanes: int | None = None
        self.lanes = next((n for n in LANE_CANDIDATES if self._norm_matches(n)), None)

    def rmsnorm(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        """x (..., dim) contiguous, weight (dim,), both bf16 or both fp32 -> the reference's
        `weight * rms_norm(x.float()).to(x.dtype)`, bit for bit."""
        dim = weight.shape[0]
        y = torch.empty_like(x)
        failed = self.c_rmsnorm(
            x.data_ptr(), weight.data_ptr(), y.data_ptr(), x.numel() // dim, dim, eps,
            int(x.dtype == torch.bfloat16), self.lanes,
        )  # fmt: skip
        if failed:
            raise MemoryError("no memory for the norm")
        return y

    def add_rmsnorm(
        self, x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x + residual, rmsnorm of it) as the reference's `x = x + o; norm(x)`, bit for bit;
        x and residual contiguous, of one shape and dtype."""
        dim = weight.shape[0]
        total, y = torch.empty_like(x), torch.empty_like(x)
        failed = self.c_add_rmsnorm(
            x.data_ptr(), residual.data_ptr(), weight.data_ptr(), total.data_ptr(), y.data_ptr(),
            x.numel() // dim, dim, eps, int(x.dtype == torch.bfloat16), self.lanes,
        )  # fmt: skip
        if failed:
            raise MemoryError("no memory for the norm")
        return total, y

    def swiglu(self, gate_up: torch.Tensor) -> torch.Tensor:
        """bf16 rows [gate | up] (..., 2 * inner), contiguous -> `F.silu(gate) * up`, bit for
        bit (inner a multiple of SWIGLU_MULTIPLE)."""
        inner = gate_up.shape[-1] // 2
        y = gate_up.new_empty((*gate_up.shape[:-1], inner))
        self.c_swiglu(
            gate_up.data_ptr(), self.silu_table.data_ptr(), y.data_ptr(), y.numel() // inner, inner
        )
        return y

    def scale_add(self, y: torch.Tensor, out: torch.Tensor, w: float, first: bool) -> None:
        """out = (0 if first else out) + y * w in place, as PyTorch's ops in y's dtype round it;
        y and out contiguous, of one size and dtype (bf16 or fp32), w a value of that dtype."""
        self.c_scale_add(
            y.data_ptr(), out.data_ptr(), y.numel(), int(y.dtype == torch.bfloat16), w, int(first)
        )

    def attend_step(
        self,
        qkv: torch.Tensor,
        q_norm: torch.Tensor,
        k_norm: torch.Tensor,
        eps: float,
        cos: torch.Tensor,
        sin: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        pos: int,
    ) -> torch.Tensor:
        """One position's attention from its q/k/v projection (contiguous, heads + 2 kv_heads
        rows of head_dim): q and k normed (weights q_norm, k_norm) and rotated by cos/sin as
        the reference's AttentionInputs does, k and v written into the layer's whole cache
        (1, kv_heads, max_tokens, hd) at `pos`, then the one-query attention over positions
        0..pos -> (heads * hd,)."""
        kv_heads, hd = keys.shape[1], keys.shape[3]
        heads = qkv.numel() // hd - 2 * kv_heads
        out = qkv.new_empty(heads * hd)
        failed = self.c_attend_step(
            qkv.data_ptr(), q_norm.data_ptr(), k_norm.data_ptr(), keys.data_ptr(),
            values.data_ptr(), out.data_ptr(), heads, kv_heads, hd, keys.stride(1), eps, eps,
            hd**-0.5, int(qkv.dtype == torch.bfloat16), self.lanes, cos.data_ptr(),
            sin.data_ptr(), pos, torch.get_num_threads(),
        )  # fmt: skip
        if failed:
            raise MemoryError("no memory for the attention scores")
        return out

    def _norm_matches(self, lanes: int) -> bool:
        self.lanes = lanes
        gen = torch.Generator().manual_seed(lanes)
        for dim in (7, 128, 200, 2048):
            x = torch.randn(16, dim, generator=gen) * 3
            w = torch.randn(dim, generator=gen)
            want = w * F.rms_norm(x, (dim,), eps=1e-6)
            if not torch.equal(self.rmsnorm(x, w, 1e-6), want):
                return False
        return True

    def attention(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """q (1, heads, 1, hd) over keys/values (1, kv_heads, len, hd) whose rows are contiguous
        (the cache's slices) -> (1, heads, 1, hd): softmax(q k^T / sqrt(hd)) v in fp32."""
        _, heads, _, hd = q.shape
        kv_heads, length = keys.shape[1], keys.shape[2]
        q = q.contiguous()
        out = torch.empty_like(q)
        failed = self._attention(
            q.data_ptr(), keys.data_ptr(), values.data_ptr(), out.data_ptr(), heads, kv_heads,
            length, hd, keys.stride(1), hd**-0.5, int(q.dtype == torch.bfloat16),
            torch.get_num_threads(),
        )  # fmt: skip
        if failed:
            raise MemoryError("no memory for the attention scores")
        return out

    @staticmethod
    def supports_attention(heads: int, kv_heads: int, head_dim: int, dtype: torch.dtype) -> bool:
        return (
            dtype in DTYPES
            and heads % kv_heads == 0
            and heads // kv_heads <= MAX_GROUP
            and head_dim % 16 == 0
            and head_dim <= MAX_HEAD_DIM
        )


def _self_test(kernel: DecodeOpsKernel) -> None:
    # A wrong build (compiler, CPU) must not produce wrong text: compare with PyTorch.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 200, generator=gen).bfloat16()
    w = torch.randn(200, generator=gen).bfloat16()
    want = w * F.rms_norm(x.float(), (200,), eps=1e-6).bfloat16()
    if kernel.lanes is not None and not torch.equal(kernel.rmsnorm(x, w, 1e-6), want):
        raise NativeUnavailable("self-test failed (rmsnorm)")
    q = torch.randn(1, 4, 1, 32, generator=gen)
    k, v = torch.randn(2, 1, 2, 9, 32, generator=gen)
    want = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    if not torch.allclose(kernel.attention(q, k, v), want, atol=1e-4):
        raise NativeUnavailable("self-test failed (attention)")
    gate_up = (torch.randn(1, 2 * 6144, generator=gen) * 4).bfloat16()
    gate, up = gate_up.chunk(2, dim=-1)
    if not torch.equal(kernel.swiglu(gate_up), F.silu(gate) * up):
        kernel.silu_table = None  # this PyTorch's SiLU is not one function of its input: its own


def _bf16_silu_table() -> torch.Tensor:
    bits = torch.arange(1 << 16, dtype=torch.int32)
    values = torch.where(bits >= 1 << 15, bits - (1 << 16), bits).to(torch.int16)
    # In pieces below PyTorch's parallel grain size, each a multiple of its vector length, so
    # every value takes the vector loop, as a decode step's rows do.
    silu = [F.silu(piece) for piece in values.view(torch.bfloat16).split(4096)]
    return torch.cat(silu).float()  # exact: the C loop multiplies in fp32


KERNEL = NativeKernel("decode_ops", SOURCE, DecodeOpsKernel, _self_test, FLAGS)
load, build, why_unavailable = KERNEL.load, KERNEL.build, KERNEL.why_unavailable
