"""RMSNorm, q/k norm + RoPE, one-query attention and the rest of a CPU decode step's small
ops as C calls (csrc/decode_ops.c).

With every projection of a Qwen3-1.7B-shaped step replaced by a precomputed output, the step
still took about 8 ms on a 2-core Zen 4 machine: 113 RMSNorms of four tensor ops each (about
14 us apiece for 128 or 2,048 values), RoPE's six ops for q and for k, and 28 one-query SDPA
calls (60-110 us). Here each is one call (a norm 5 us, attention at 160 positions 21 us); an
int4 step went from 27.0 to 22.0 ms (benchmarks/RESULTS.md, bench_cpu_decode_ops.py). Then
the tensor ops and Python around them (splits, copies, the cache writes, residual adds,
SwiGLU's chunk, SiLU and product, about 5 us each) were most of what was left: a decode step
of a layer is now its four projections and three C calls (attend_step, add_rmsnorm, swiglu)
plus one residual add.

engine/model.py stays the reference. `install` swaps its RMSNorm modules for FastRMSNorm, its
AttentionInputs for FastAttentionInputs, its LayerOutput for FastLayerOutput and its
DecoderLayer for FastDecoderLayer, all bit-identical to the reference (tested), and gives
each layer the one-query attention kernel for single-token steps without a mask: fp32
scores, softmax and sums, rounded once at the end (fp32: within 1e-5 relative of SDPA; bf16:
within half a bf16 step of the exact result, tested on GQA 16/8, 32/8, 40/8, 32/4 at lengths
1 to 4,097). SwiGLU stays bit-identical without reproducing PyTorch's SiLU in C: it looks up
PyTorch's own bf16 SiLU of each of the 65,536 bf16 values (fp32 models keep PyTorch's SiLU).
Everything else runs the reference.

Built by native_build for the CPU it runs on; `load()` returns None where it cannot be had
(no compiler, not x86-64, QWEN3TUI_CPU_KERNELS=0) and the model keeps PyTorch's path.
"""

from __future__ import annotations

import ctypes

import torch
import torch.nn.functional as F

from .model import AttentionInputs, DecoderLayer, LayerOutput, Qwen3, RMSNorm
from .native_build import NativeKernel, NativeUnavailable, c_function, simd_name

SOURCE = "decode_ops.c"
# The bit-for-bit RMSNorm must round every product and sum on its own, as PyTorch does.
FLAGS = ("-ffp-contract=off",)
# RMSNorm inputs up to this many values take the C call (a decode step's rows: 2,048 hidden
# values, 16-64 heads of 128); longer ones (prefill) run PyTorch's threaded ops.
NORM_MAX_VALUES = 16384
_DTYPES = (torch.bfloat16, torch.float32)
MAX_GROUP, MAX_HEAD_DIM = 16, 256  # what the attention kernel is built for (decode_ops.c)
LANE_CANDIDATES = (8, 16, 4, 32)  # float vector widths PyTorch's CPU kernels may sum with
# SwiGLU rows whose halves are a multiple of this take the C call: PyTorch's SiLU then runs
# every value through its vector loop (a row's leftover values take a scalar exp that may
# round differently from the table's). Qwen3's intermediate sizes all are.
SWIGLU_MULTIPLE = 64


class DecodeOpsKernel:
    def __init__(self, lib: ctypes.CDLL) -> None:
        i64, ptr, f32, c_int = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float, ctypes.c_int
        self.simd = simd_name(lib.decode_ops_simd)
        norm = (i64, i64, f32, c_int, c_int)  # rows, dim, eps, bf16, lanes
        self._rmsnorm = c_function(lib.rmsnorm, None, *[ptr] * 3, *norm)
        self._rmsnorm_rope = c_function(lib.rmsnorm_rope, None, *[ptr] * 5, *norm)
        self._attention = c_function(
            lib.attention_one_query, c_int, *[ptr] * 4, *[i64] * 5, f32, c_int, c_int
        )
        self._attend_step = c_function(
            lib.attend_step, c_int, *[ptr] * 8, *[i64] * 5, *[f32] * 3, *[c_int] * 3
        )
        self._add_rmsnorm = c_function(lib.add_rmsnorm, None, *[ptr] * 5, *norm)
        self._swiglu = c_function(lib.swiglu_bf16, None, ptr, ptr, ptr, i64, i64)
        # PyTorch's own bf16 SiLU of every bf16 bit pattern (as fp32): SwiGLU in C looks it
        # up, so it is the reference's bit for bit (its SiLU's exp is not reproducible in C).
        self.silu_table = _bf16_silu_table()
        # The vector width of PyTorch's sum here, which fixes the order it adds in: found by
        # trying (it is not simply the CPU's: AVX-512 machines sum 8 floats at a time); None
        # if no width reproduces it, and then RMSNorm stays PyTorch's.
        self.lanes: int | None = None
        self.lanes = next((n for n in LANE_CANDIDATES if self._norm_matches(n)), None)

    def rmsnorm(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        """x (..., dim) contiguous, weight (dim,), both bf16 or both fp32 -> the reference's
        `weight * rms_norm(x.float()).to(x.dtype)`, bit for bit."""
        dim = weight.shape[0]
        y = torch.empty_like(x)
        self._rmsnorm(
            x.data_ptr(), weight.data_ptr(), y.data_ptr(), x.numel() // dim, dim, eps,
            int(x.dtype == torch.bfloat16), self.lanes,
        )  # fmt: skip
        return y

    def rmsnorm_rope(
        self,
        x: torch.Tensor,
        weight: torch.Tensor,
        eps: float,
        cos: torch.Tensor,
        sin: torch.Tensor,
    ) -> torch.Tensor:
        """The reference's `apply_rope(rms_norm(x))` for one position, bit for bit: x (...,
        head_dim) contiguous rows, cos/sin (head_dim,) values of that position, all one dtype."""
        dim = weight.shape[0]
        y = torch.empty_like(x)
        self._rmsnorm_rope(
            x.data_ptr(), weight.data_ptr(), cos.data_ptr(), sin.data_ptr(), y.data_ptr(),
            x.numel() // dim, dim, eps, int(x.dtype == torch.bfloat16), self.lanes,
        )  # fmt: skip
        return y

    def add_rmsnorm(
        self, x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x + residual, rmsnorm of it) as the reference's `x = x + o; norm(x)`, bit for bit;
        x and residual contiguous, of one shape and dtype."""
        dim = weight.shape[0]
        total, y = torch.empty_like(x), torch.empty_like(x)
        self._add_rmsnorm(
            x.data_ptr(), residual.data_ptr(), weight.data_ptr(), total.data_ptr(), y.data_ptr(),
            x.numel() // dim, dim, eps, int(x.dtype == torch.bfloat16), self.lanes,
        )  # fmt: skip
        return total, y

    def swiglu(self, gate_up: torch.Tensor) -> torch.Tensor:
        """bf16 rows [gate | up] (..., 2 * inner), contiguous -> `F.silu(gate) * up`, bit for
        bit (inner a multiple of SWIGLU_MULTIPLE, see FastLayerOutput)."""
        inner = gate_up.shape[-1] // 2
        y = gate_up.new_empty((*gate_up.shape[:-1], inner))
        self._swiglu(
            gate_up.data_ptr(), self.silu_table.data_ptr(), y.data_ptr(), y.numel() // inner, inner
        )
        return y

    def attend_step(
        self,
        qkv: torch.Tensor,
        inputs: AttentionInputs,
        cos: torch.Tensor,
        sin: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        pos: int,
    ) -> torch.Tensor:
        """One position's attention from its q/k/v projection (contiguous, heads + 2 kv_heads
        rows of head_dim): q and k normed and rotated as FastAttentionInputs does, k and v
        written into the layer's whole cache (1, kv_heads, max_tokens, hd) at `pos`, then the
        one-query attention over positions 0..pos -> (1, heads, 1, hd)."""
        heads, kv_heads, hd = inputs.n_heads, inputs.n_kv, inputs.head_dim
        out = qkv.new_empty((1, heads, 1, hd))
        failed = self._attend_step(
            qkv.data_ptr(), inputs.q_norm.weight.data_ptr(), inputs.k_norm.weight.data_ptr(),
            cos.data_ptr(), sin.data_ptr(), keys.data_ptr(), values.data_ptr(), out.data_ptr(),
            heads, kv_heads, hd, pos, keys.stride(1), inputs.q_norm.eps, inputs.k_norm.eps,
            hd**-0.5, int(qkv.dtype == torch.bfloat16), self.lanes, torch.get_num_threads(),
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
            dtype in (torch.float32, torch.bfloat16)
            and heads % kv_heads == 0
            and heads // kv_heads <= MAX_GROUP
            and head_dim % 16 == 0
            and head_dim <= MAX_HEAD_DIM
        )


class FastRMSNorm(RMSNorm):
    """RMSNorm whose decode-size inputs go to the C kernel; bit-identical to the reference."""

    def __init__(self, norm: RMSNorm, kernel: DecodeOpsKernel | None) -> None:
        super().__init__(norm.weight.shape[0], norm.eps)
        self.weight = norm.weight  # shared, not copied
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if (
            self.kernel is not None
            and x.dtype == w.dtype
            and x.dtype in _DTYPES
            and x.is_cpu
            and x.numel() <= NORM_MAX_VALUES
            and x.is_contiguous()
            and w.is_contiguous()
            and self.kernel.lanes is not None
            and not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad))
        ):
            return self.kernel.rmsnorm(x, w, self.eps)
        return super().forward(x)


class FastAttentionInputs(AttentionInputs):
    """AttentionInputs whose single-position steps norm and rotate q and k in one C call each
    (bit-identical to the reference's q/k norms and apply_rope); other inputs run the
    reference. Installed by changing the class of the loaded module (its weights stay put)."""

    kernel: DecodeOpsKernel | None = None

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        b, t, _ = x.shape
        kernel, hd = self.kernel, self.head_dim
        qw, kw = self.q_norm.weight, self.k_norm.weight
        if not (
            kernel is not None
            and kernel.lanes is not None
            and b == 1
            and t == 1
            and x.is_cpu
            and x.dtype in _DTYPES
            and x.dtype == qw.dtype == kw.dtype == cos.dtype == sin.dtype
            and hd % 2 == 0
            and cos.is_contiguous()
            and sin.is_contiguous()
            and not (torch.is_grad_enabled() and x.requires_grad)
        ):
            return super().forward(x, cos, sin)
        q, k, v = self.qkv_proj(self.norm(x)).split(
            [self.n_heads * hd, self.n_kv * hd, self.n_kv * hd], dim=-1
        )
        q = kernel.rmsnorm_rope(q.contiguous(), qw, self.q_norm.eps, cos, sin)
        k = kernel.rmsnorm_rope(k.contiguous(), kw, self.k_norm.eps, cos, sin)
        return (
            q.view(1, self.n_heads, 1, hd),
            k.view(1, self.n_kv, 1, hd),
            v.view(1, 1, self.n_kv, hd).transpose(1, 2),
        )


class FastLayerOutput(LayerOutput):
    """LayerOutput whose single-position steps add the residual and norm in one C call and,
    in bf16, take SwiGLU as one C call (both bit-identical to the reference); other inputs
    run the reference. Installed by changing the class of the loaded module."""

    kernel: DecodeOpsKernel | None = None

    def forward(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        kernel, norm = self.kernel, self.norm
        b, h, t, hd = attended.shape
        if not (
            kernel is not None
            and kernel.lanes is not None
            and b == 1
            and t == 1
            and x.is_cpu
            and x.dtype in _DTYPES
            and x.dtype == attended.dtype == norm.weight.dtype
            and x.is_contiguous()
            and not torch.is_grad_enabled()
        ):
            return super().forward(x, attended)
        o = self.o_proj(attended.reshape(b, t, h * hd)).contiguous()
        x, normed = kernel.add_rmsnorm(x, o, norm.weight, norm.eps)
        gate_up = self.gate_up_proj(normed)
        if (
            x.dtype == torch.bfloat16
            and kernel.silu_table is not None
            and gate_up.shape[-1] % (2 * SWIGLU_MULTIPLE) == 0
            and gate_up.is_contiguous()
        ):
            act = kernel.swiglu(gate_up)
        else:
            gate, up = gate_up.chunk(2, dim=-1)
            act = F.silu(gate) * up
        return x + self.down_proj(act)


class FastDecoderLayer(DecoderLayer):
    """DecoderLayer whose decode steps (one token at a host position, no mask) take q/k norm,
    RoPE, the cache write and the one-query attention in one C call (attend_step), with the
    results of FastAttentionInputs, KVCache.store and OneQueryAttention; other steps, or a
    layer without those kernels, run the reference. Installed by changing the class."""

    _step_layouts: dict | None = None

    def forward(self, x, cos, sin, cache, pos, kv_len, mask):
        attention, inputs = self.one_query_attention, self.inputs
        if (
            mask is None
            and type(pos) is int
            and kv_len == pos + 1
            and isinstance(attention, OneQueryAttention)
            and isinstance(inputs, FastAttentionInputs)
            and inputs.kernel is not None
            and not torch.is_grad_enabled()
        ):
            keys, values = cache.keys[self.index], cache.values[self.index]
            if pos < keys.shape[2] and self._takes_step(x, cos, sin, keys, values):
                kernel, norm = inputs.kernel, inputs.norm
                # The norm module's own C call, without its per-call checks (made once here).
                qkv = inputs.qkv_proj(kernel.rmsnorm(x, norm.weight, norm.eps)).contiguous()
                attended = kernel.attend_step(qkv, inputs, cos, sin, keys, values, pos)
                return self.output(x, attended)
        return super().forward(x, cos, sin, cache, pos, kv_len, mask)

    def _takes_step(self, x, cos, sin, keys, values) -> bool:
        # Everything checked here is the same at every step of a layer: checked once.
        layout = (x.shape, x.stride(), x.dtype, x.device, cos.shape, cos.dtype, cos.stride())
        layout += (sin.stride(),)
        layout += (sin.dtype, keys.shape, keys.dtype, keys.stride(), values.dtype, values.stride())
        if self._step_layouts is None:
            self._step_layouts = {}
        ok = self._step_layouts.get(layout)
        if ok is None:
            inputs = self.inputs
            hd, heads, kv_heads = inputs.head_dim, inputs.n_heads, inputs.n_kv
            ok = self._step_layouts[layout] = bool(
                inputs.kernel.lanes is not None
                and x.is_cpu
                and keys.is_cpu
                and x.dtype in _DTYPES
                and x.dtype == cos.dtype == sin.dtype == keys.dtype == values.dtype
                and x.dtype == inputs.q_norm.weight.dtype == inputs.k_norm.weight.dtype
                and type(inputs.norm) in (RMSNorm, FastRMSNorm)
                and x.dtype == inputs.norm.weight.dtype
                and x.is_contiguous()
                and x.shape[-1] <= NORM_MAX_VALUES
                and inputs.norm.weight.is_contiguous()
                and inputs.q_norm.weight.is_contiguous()
                and inputs.k_norm.weight.is_contiguous()
                and tuple(x.shape[:2]) == (1, 1)
                and tuple(cos.shape) == tuple(sin.shape) == (1, hd)
                and cos.is_contiguous()
                and sin.is_contiguous()
                and keys.shape == values.shape
                and keys.dim() == 4
                and (keys.shape[0], keys.shape[1], keys.shape[3]) == (1, kv_heads, hd)
                and keys.is_contiguous()
                and values.is_contiguous()
                and hd % 2 == 0
                and inputs.kernel.supports_attention(heads, kv_heads, hd, x.dtype)
            )
        return ok


class OneQueryAttention:
    """A layer's attention for a single query per head over its cache rows (the hook
    DecoderLayer.one_query_attention); the same as its reference SDPA within fp32 rounding."""

    def __init__(self, kernel: DecodeOpsKernel) -> None:
        self.kernel = kernel
        self._checked: dict[tuple, bool] = {}

    def __call__(
        self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
    ) -> torch.Tensor | None:
        """The attended values, or None where the kernel does not apply (then the layer runs
        its reference path)."""
        strides = keys.stride()
        # Everything but the cache length is the same at every step of a layer: checked once.
        layout = (q.shape, q.dtype, q.device, keys.shape[1], keys.shape[3], keys.dtype)
        layout += (keys.device, values.dtype, strides, values.stride())
        ok = self._checked.get(layout)
        if ok is None:
            ok = self._checked[layout] = (
                q.is_cpu
                and keys.is_cpu
                and q.shape[0] == 1
                and keys.shape[3] == q.shape[3]
                and q.dtype == keys.dtype == values.dtype
                and strides == values.stride()
                and strides[3] == 1
                and strides[2] == q.shape[3]
                and self.kernel.supports_attention(q.shape[1], keys.shape[1], q.shape[3], q.dtype)
            )
        return self.kernel.attention(q, keys, values) if ok else None


def install(model: Qwen3) -> bool:
    """Swap the model's RMSNorms and give its layers the one-query attention, where the kernel
    can be had; False (and the model untouched) where not."""
    kernel = load()
    if kernel is None:
        return False
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is RMSNorm:
                setattr(module, name, FastRMSNorm(child, kernel))
    attention = OneQueryAttention(kernel)
    for layer in model.layers:
        if isinstance(layer, DecoderLayer):
            layer.one_query_attention = attention
        if type(layer.inputs) is AttentionInputs:
            layer.inputs.__class__ = FastAttentionInputs
            layer.inputs.kernel = kernel
        if type(layer.output) is LayerOutput:
            layer.output.__class__ = FastLayerOutput
            layer.output.kernel = kernel
        if type(layer) is DecoderLayer:
            layer.__class__ = FastDecoderLayer
    return True


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
