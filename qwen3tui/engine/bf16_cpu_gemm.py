"""A C kernel for many-row bf16 products (prefill) on x86 CPUs where oneDNN has no bf16 (AVX2).

There, PyTorch's bf16 matmul falls back to a generic loop: 10-20 GFLOP/s for Qwen3-1.7B's
projections at 128-512 rows on a 2-core Zen 3 whose FMA units give ~190, so a 128-token prompt
took seconds. This kernel reads the same plain (out, in) weight as the decode kernel (no copy)
and turns bf16 into fp32 in registers; fp32 accumulation, each output rounded to bf16 once, as
PyTorch's. Machines with oneDNN bf16 (AVX-512, AMX) keep oneDNN. Measurements:
benchmarks/bench_cpu_gemm.py and benchmarks/RESULTS.md.

The C source is csrc/bf16_gemm.c, built by native_build for the CPU it runs on; `load()`
returns None where it cannot be had.
"""

from __future__ import annotations

import ctypes

import torch

from .native_build import NativeKernel, NativeUnavailable, c_function, simd_name

SOURCE = "bf16_gemm.c"


class Bf16Gemm:
    def __init__(self, lib: ctypes.CDLL) -> None:
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        self.simd = simd_name(lib.bf16_gemm_simd)
        self._gemm = c_function(
            lib.bf16_gemm, ctypes.c_int, ptr, ptr, ptr, ptr, i64, i64, i64, i64, ctypes.c_int
        )

    def matmul(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """x (..., K) bf16 @ weight (N, K) contiguous bf16 .T -> (..., N) bf16."""
        n, k = weight.shape
        flat = x.reshape(-1, k).contiguous()
        y = torch.empty((flat.shape[0], n), dtype=torch.bfloat16)
        if not self.into(flat, weight, y):
            return torch.nn.functional.linear(x, weight)  # no scratch memory: PyTorch's way
        return y.view(*x.shape[:-1], n)

    def into(
        self,
        x: torch.Tensor,
        weight: torch.Tensor,
        out: torch.Tensor,
        scale: torch.Tensor | None = None,
    ) -> bool:
        """out (M, N) = x (M, K) @ weight (N, K).T, times scale (N contiguous float32) per
        column before the rounding when given; x and weight contiguous bf16, out bf16 with unit
        column stride (a column slice of a wider output is fine). False when it could not run."""
        (m, k), n = x.shape, weight.shape[0]
        fits = out.shape == (m, n) and out.stride(1) == 1 and out.dtype == torch.bfloat16
        fits &= x.is_contiguous() and weight.is_contiguous() and weight.shape[1] == k
        fits &= x.dtype == weight.dtype == torch.bfloat16
        if scale is not None:
            fits &= scale.dtype == torch.float32 and scale.is_contiguous() and scale.numel() == n
        if not fits:
            raise ValueError("bf16 gemm: shapes, dtypes or strides do not fit")
        s = scale.data_ptr() if scale is not None else None
        threads = torch.get_num_threads()
        args = (x.data_ptr(), weight.data_ptr(), s, out.data_ptr(), out.stride(0), m, n, k)
        return self._gemm(*args, threads) == 0


def _self_test(kernel: Bf16Gemm) -> None:
    # A wrong build (compiler, CPU) must not produce wrong text: compare with PyTorch.
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(67, 88, generator=gen).bfloat16()  # row, column and k tails
    x = torch.randn(7, 88, generator=gen).bfloat16()
    want = x.float() @ w.float().T
    if not torch.allclose(kernel.matmul(x, w).float(), want, rtol=2e-2, atol=2e-2):
        raise NativeUnavailable("self-test failed")
    scale = torch.rand(67, generator=gen) + 0.5
    scaled = torch.empty(7, 67, dtype=torch.bfloat16)
    if not kernel.into(x, w, scaled, scale) or not torch.allclose(
        scaled.float(), want * scale, rtol=2e-2, atol=2e-2
    ):
        raise NativeUnavailable("self-test failed (scaled)")


KERNEL = NativeKernel("bf16_gemm", SOURCE, Bf16Gemm, _self_test)
load, build, why_unavailable = KERNEL.load, KERNEL.build, KERNEL.why_unavailable
