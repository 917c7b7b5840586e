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
from collections.abc import Sequence

import torch

from .native_build import NATIVE, NativeUnavailable, OnceKernel, load_library

SOURCE = "bf16_gemm.c"


class Bf16Gemm:
    def __init__(self, lib: ctypes.CDLL) -> None:
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        lib.bf16_gemm_simd.restype = ctypes.c_char_p
        self.simd: str = lib.bf16_gemm_simd().decode()  # the instruction set it was built for
        self._gemm = lib.bf16_gemm
        self._gemm.restype = ctypes.c_int
        self._gemm.argtypes = [ptr, ptr, ptr, i64, i64, i64, ctypes.c_int]

    def matmul(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """x (..., K) bf16 @ weight (N, K) contiguous bf16 .T -> (..., N) bf16."""
        n, k = weight.shape
        flat = x.reshape(-1, k).contiguous()
        y = torch.empty((flat.shape[0], n), dtype=torch.bfloat16)
        threads = torch.get_num_threads()
        if self._gemm(flat.data_ptr(), weight.data_ptr(), y.data_ptr(), *y.shape, k, threads):
            return torch.nn.functional.linear(x, weight)  # no scratch memory: PyTorch's way
        return y.view(*x.shape[:-1], n)


def load() -> Bf16Gemm | None:
    """The kernel, built on first use and cached on disk; None where it cannot be had."""
    return _once.get()


def why_unavailable() -> str | None:
    """Why load() returned None, for diagnostics."""
    return _once.unavailable_reason


def build(arch: Sequence[str] = NATIVE, extra: Sequence[str] = ()) -> Bf16Gemm:
    """The kernel built with these flags and self-tested (tests build every variant)."""
    kernel = Bf16Gemm(load_library("bf16_gemm", SOURCE, arch, extra))
    _self_test(kernel)
    return kernel


def _load() -> Bf16Gemm:
    return build()


def _self_test(kernel: Bf16Gemm) -> None:
    # A wrong build (compiler, CPU) must not produce wrong text: compare with PyTorch.
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(67, 88, generator=gen).bfloat16()  # row, column and k tails
    x = torch.randn(7, 88, generator=gen).bfloat16()
    want = x.float() @ w.float().T
    if not torch.allclose(kernel.matmul(x, w).float(), want, rtol=2e-2, atol=2e-2):
        raise NativeUnavailable("self-test failed")


_once = OnceKernel(_load)
