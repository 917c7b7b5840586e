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
            lib.bf16_gemm, ctypes.c_int, ptr, ptr, ptr, i64, i64, i64, ctypes.c_int
        )

    def matmul(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """x (..., K) bf16 @ weight (N, K) contiguous bf16 .T -> (..., N) bf16."""
        n, k = weight.shape
        flat = x.reshape(-1, k).contiguous()
        y = torch.empty((flat.shape[0], n), dtype=torch.bfloat16)
        threads = torch.get_num_threads()
        if self._gemm(flat.data_ptr(), weight.data_ptr(), y.data_ptr(), *y.shape, k, threads):
            return torch.nn.functional.linear(x, weight)  # no scratch memory: PyTorch's way
        return y.view(*x.shape[:-1], n)


def _self_test(kernel: Bf16Gemm) -> None:
    # A wrong build (compiler, CPU) must not produce wrong text: compare with PyTorch.
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(67, 88, generator=gen).bfloat16()  # row, column and k tails
    x = torch.randn(7, 88, generator=gen).bfloat16()
    want = x.float() @ w.float().T
    if not torch.allclose(kernel.matmul(x, w).float(), want, rtol=2e-2, atol=2e-2):
        raise NativeUnavailable("self-test failed")


KERNEL = NativeKernel("bf16_gemm", SOURCE, Bf16Gemm, _self_test)
load, build, why_unavailable = KERNEL.load, KERNEL.build, KERNEL.why_unavailable
