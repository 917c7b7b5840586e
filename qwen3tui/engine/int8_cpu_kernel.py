"""A small C kernel for int8 weight-only matmuls on x86 CPUs, built at first use.

`torch._weight_int8pack_mm` reads four weight rows at a time, each a short strided stream, and
converts and rescales every weight in its inner loop: on a 2-core Xeon it reached 13-15 GB/s on
Qwen3-1.7B's layer shapes where a bf16 GEMV reads 24 GB/s. This kernel stores each block of 16
output rows as one sequential stream ([N/16][K][16] int8: a 64-byte line is 4 k x 16 rows),
reads four blocks at once with software prefetch, and applies the per-channel scale once per
output: about 29 GB/s on the same shapes. The numerics are those of weight-only int8: bf16
(or fp32) activations, int8 weights, fp32 accumulation, one rounding per output; only the scale
multiplies the sum instead of each weight (differences at rounding level). Prefill, where the
CPU has VNNI dot products, is `gemm`: int8 activations per 64 inputs, integer sums (measured
2-7x the rate of the bf16 paths it replaced on a 2-core Zen 4; RESULTS.md).

Plain C with AVX-512 or AVX2 intrinsics and OpenMP (csrc/int8_matmul.c), built by native_build
at first use for the CPU it runs on.
Without a compiler, on another architecture or if its self-test fails, `load()` returns None
and callers keep PyTorch's path.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable

import torch

from .native_build import NativeKernel, NativeUnavailable, c_function, simd_name

SOURCE = "int8_matmul.c"

BLOCK = 16  # output rows per packed block: one 512-bit vector of fp32 accumulators
MAX_ROWS = 8  # activation rows one kernel call takes
GROUP = 64  # activation inputs per int8 scale in `gemm` (Q8_GROUP in the C file)

_DTYPES = (torch.bfloat16, torch.float32)


class Int8Kernel:
    """The loaded library: packing, the few-row matmul and the prefill dequantization."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        i64, ptr, c_int = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
        self.simd = simd_name(lib.q8_simd)
        self._matmul = c_function(
            lib.q8_matmul, c_int, ptr, i64, c_int, ptr, ptr, ptr, i64, i64, c_int
        )
        self._dequant = c_function(
            lib.q8_dequant_t, None, ptr, ptr, ptr, c_int, i64, i64, i64, i64, c_int
        )
        self._unpack_bf16 = c_function(lib.q8_unpack_bf16, None, ptr, ptr, i64, i64, i64, c_int)
        self._gemm = c_function(lib.q8_gemm, c_int, ptr, i64, c_int, ptr, ptr, ptr, i64, i64, c_int)
        # Rows `gemm` takes a call; 0 where the CPU has no VNNI dot products (no `gemm`).
        self.gemm_rows = c_function(lib.q8_gemm_rows, c_int)()

    @staticmethod
    def supports(in_features: int, dtype: torch.dtype) -> bool:
        return in_features % 4 == 0 and dtype in _DTYPES

    @staticmethod
    def pack(q: torch.Tensor) -> torch.Tensor:
        """int8 (N, K) -> (ceil(N/16), K, 16); padding rows are zero."""
        n, k = q.shape
        padded = -(-n // BLOCK) * BLOCK
        if padded != n:
            q = torch.cat([q, q.new_zeros(padded - n, k)])
        return q.view(padded // BLOCK, BLOCK, k).transpose(1, 2).contiguous()

    @staticmethod
    def unpack(packed: torch.Tensor, n: int) -> torch.Tensor:
        return packed.transpose(1, 2).reshape(-1, packed.shape[1])[:n]

    def matmul(self, x: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """x (M <= MAX_ROWS, K) contiguous bf16/fp32 -> (M, padded N) in x's dtype."""
        m = x.shape[0]
        if not 1 <= m <= MAX_ROWS or x.dtype not in _DTYPES:
            raise ValueError(
                f"int8 kernel: takes 1 to {MAX_ROWS} bf16/fp32 rows, not {m} {x.dtype}"
            )
        n = packed.shape[0] * BLOCK
        y = torch.empty((m, n), dtype=x.dtype)
        err = self._matmul(
            x.data_ptr(), m, x.dtype == torch.bfloat16, packed.data_ptr(), scale.data_ptr(),
            y.data_ptr(), n, packed.shape[1], torch.get_num_threads(),
        )  # fmt: skip
        if err:
            raise MemoryError("int8 kernel: no memory for the activations")
        return y

    def row(
        self, x: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor, n: int
    ) -> torch.Tensor:
        """matmul for a single row x (..., K), shaped (..., n): one row through the module
        (decode steps bind the same call once: `bind_row`)."""
        if x.dtype not in _DTYPES:
            raise ValueError(f"int8 kernel: takes bf16 or fp32 activations, not {x.dtype}")
        x = x.contiguous()
        padded = packed.shape[0] * BLOCK
        y = torch.empty((*x.shape[:-1], padded), dtype=x.dtype)
        if self.bind_row(x, packed, scale, y)(torch.get_num_threads()):
            raise MemoryError("int8 kernel: no memory for the activations")
        return y if padded == n else y[..., :n]

    def bind_row(
        self, x: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor, y: torch.Tensor
    ) -> Callable[[int], int]:
        """`row` from x (K contiguous values) into y (padded N values), every pointer bound
        once: decode steps call it with the thread count alone; it returns non-zero where it
        had no memory for the activations."""
        return functools.partial(
            self._matmul, x.data_ptr(), 1, x.dtype == torch.bfloat16, packed.data_ptr(),
            scale.data_ptr(), y.data_ptr(), packed.shape[0] * BLOCK, packed.shape[1],
        )  # fmt: skip

    def gemm(self, x: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Prefill rows x (M, K) bf16/fp32 -> (M, padded N) in x's dtype, with int8 activations:
        each row quantized per GROUP inputs (as `quantized_rows` computes), integer dot products
        (VNNI), gemm_rows rows a call reading the weights once for all of them."""
        if not self.gemm_rows:
            raise ValueError("int8 kernel: this CPU has no VNNI dot products for gemm")
        x = x.contiguous()
        if x.dtype not in _DTYPES:
            raise ValueError(f"int8 kernel: takes bf16 or fp32 activations, not {x.dtype}")
        n = packed.shape[0] * BLOCK
        y = torch.empty((x.shape[0], n), dtype=x.dtype)
        for r in range(0, x.shape[0], self.gemm_rows):
            rows = x[r : r + self.gemm_rows]
            err = self._gemm(
                rows.data_ptr(), rows.shape[0], x.dtype == torch.bfloat16, packed.data_ptr(),
                scale.data_ptr(), y[r].data_ptr(), n, packed.shape[1], torch.get_num_threads(),
            )  # fmt: skip
            if err:
                raise MemoryError("int8 kernel: no memory for the activations")
        return y

    def dequantize_t(
        self, packed: torch.Tensor, scale: torch.Tensor, n0: int, n1: int, out: torch.Tensor
    ) -> torch.Tensor:
        """Fill out (K, n1 - n0), contiguous, with the dequantized rows n0..n1 transposed."""
        self._dequant(
            packed.data_ptr(), scale.data_ptr(), out.data_ptr(), out.dtype == torch.bfloat16,
            out.shape[1], n0, n1, packed.shape[1], torch.get_num_threads(),
        )  # fmt: skip
        return out

    def unpack_bf16(self, packed: torch.Tensor, b0: int, b1: int, out: torch.Tensor) -> None:
        """Fill out (16 * (b1 - b0), K), contiguous bf16, with the blocks' rows in the plain
        layout, unscaled: int8 values are exact in bf16 (the bf16 GEMM applies the scale)."""
        if (
            out.dtype != torch.bfloat16
            or not out.is_contiguous()
            or out.shape != (16 * (b1 - b0), packed.shape[1])
        ):
            raise ValueError("int8 kernel: unpack_bf16 needs a contiguous bf16 (rows, K) output")
        self._unpack_bf16(
            packed.data_ptr(), out.data_ptr(), b0, b1, packed.shape[1], torch.get_num_threads()
        )


def quantized_rows(x: torch.Tensor) -> torch.Tensor:
    """The activations `gemm` multiplies, in fp32: each row's groups of GROUP inputs rounded
    to int8 steps of max |x| / 127 (half to even, as the CPU converts)."""
    m, k = x.shape
    padded = -(-k // GROUP) * GROUP
    groups = torch.nn.functional.pad(x.float(), (0, padded - k)).view(m, -1, GROUP)
    top = groups.abs().amax(-1, keepdim=True)
    inv = torch.where(top > 1e-30, 127.0 / top, torch.zeros_like(top))
    q = torch.round(groups * inv).clamp(-127, 127)
    return (q * (top / 127.0)).view(m, padded)[:, :k]


def _self_test(kernel: Int8Kernel) -> None:
    """A wrong build (compiler, CPU) must not produce wrong text: compare with PyTorch."""
    gen = torch.Generator().manual_seed(0)
    q = torch.randint(-127, 128, (48, 64), dtype=torch.int8, generator=gen)
    scale = torch.rand(48, generator=gen) + 0.5
    packed = kernel.pack(q)
    ref_w = q.float() * scale[:, None]
    for rows in (1, 3):
        x = torch.randn(rows, 64, generator=gen)
        want = x @ ref_w.T
        got = kernel.matmul(x, packed, scale)[:, :48]
        if not torch.allclose(got, want, rtol=1e-4, atol=1e-3):
            raise NativeUnavailable("self-test failed (matmul)")
    if kernel.gemm_rows:
        x = torch.randn(3, 64, generator=gen)
        want = quantized_rows(x) @ ref_w.T
        if not torch.allclose(kernel.gemm(x, packed, scale)[:, :48], want, rtol=1e-4, atol=1e-3):
            raise NativeUnavailable("self-test failed (gemm)")
    out = torch.empty(64, 32)
    if not torch.equal(kernel.dequantize_t(packed, scale, 16, 48, out), ref_w[16:48].T):
        raise NativeUnavailable("self-test failed (dequantize)")
    plain = torch.empty(32, 64, dtype=torch.bfloat16)
    kernel.unpack_bf16(packed, 1, 3, plain)
    if not torch.equal(plain, q[16:48].to(torch.bfloat16)):
        raise NativeUnavailable("self-test failed (unpack)")


KERNEL = NativeKernel("int8_kernel", SOURCE, Int8Kernel, _self_test)
load, build, why_unavailable = KERNEL.load, KERNEL.build, KERNEL.why_unavailable
_load = build  # the name tests/test_quantize.py builds through
