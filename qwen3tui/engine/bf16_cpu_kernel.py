"""A small C kernel for one-row bf16 products on x86 CPUs (decode), built at first use.

A decode step multiplies one activation row by every weight matrix: pure memory streaming.
oneDNN's GEMV, even with pre-packed weights, read about 24 GB/s on Qwen3-1.7B's layer shapes on
a 2-core Xeon; this kernel reads the plain (out, in) matrix eight rows at a time with software
prefetch, one AVX512-BF16 dot-product instruction per 32 weights (or shifts and FMAs without
it), fp32 accumulation: about 27 GB/s, on the layers and on the 150k-row output head alike.
Because it reads the plain layout, the same matrix serves prefill (F.linear) and, with tied
embeddings, the token lookups: nothing is copied. A second entry point reads oneDNN's own packed
layout ([N/64][K/2][64][2] on AMX machines), so one pre-packed copy serves both oneDNN's
prefill matmuls and this kernel's decode products (29-30 GB/s against oneDNN's 23-24).

The C source is csrc/bf16_gemv.c, built by native_build for the CPU it runs on; `load()`
returns None where it cannot be had.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable

import torch

from .native_build import NativeKernel, NativeUnavailable, c_function, simd_name

SOURCE = "bf16_gemv.c"


class Bf16Kernel:
    def __init__(self, lib: ctypes.CDLL) -> None:
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        self.simd = simd_name(lib.bf16_simd)
        args = (ptr, ptr, ptr, i64, i64, ctypes.c_int)
        self._gemv = c_function(lib.bf16_gemv, None, *args)
        self._gemv_vnni64 = c_function(lib.bf16_gemv_vnni64, None, *args)

    def gemv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """x (1, K) and weight (N, K), both contiguous bf16 -> (1, N)."""
        y = torch.empty((1, weight.shape[0]), dtype=torch.bfloat16)
        self.bind_gemv(x, weight, y)(torch.get_num_threads())
        return y

    def bind_gemv(
        self, x: torch.Tensor, weight: torch.Tensor, y: torch.Tensor
    ) -> Callable[[int], None]:
        """`gemv` from x (K values) into y (N values), every pointer bound once: decode steps
        call it with the thread count alone."""
        n, k = weight.shape
        return functools.partial(self._gemv, x.data_ptr(), weight.data_ptr(), y.data_ptr(), n, k)

    def bind_gemv_vnni64(
        self, x: torch.Tensor, weight_ptr: int, n: int, k: int, y: torch.Tensor
    ) -> Callable[[int], None]:
        """`gemv_vnni64` bound as `bind_gemv` binds `gemv`."""
        return functools.partial(self._gemv_vnni64, x.data_ptr(), weight_ptr, y.data_ptr(), n, k)

    def gemv_vnni64(self, x: torch.Tensor, weight_ptr: int, n: int, k: int) -> torch.Tensor:
        """x (..., K) bf16 times a weight in oneDNN's [N/64][K/2][64][2] layout at weight_ptr
        (N a multiple of 64, K of 4) -> (..., N)."""
        x = x.contiguous()
        y = torch.empty((*x.shape[:-1], n), dtype=torch.bfloat16)
        self.bind_gemv_vnni64(x, weight_ptr, n, k, y)(torch.get_num_threads())
        return y


def _self_test(kernel: Bf16Kernel) -> None:
    # A wrong build (compiler, CPU) must not produce wrong text: compare with PyTorch.
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(45, 80, generator=gen).bfloat16()  # row and k tails included
    x = torch.randn(1, 80, generator=gen).bfloat16()
    want = (x.float() @ w.float().T).bfloat16()
    if not torch.allclose(kernel.gemv(x, w).float(), want.float(), rtol=2e-2, atol=2e-2):
        raise NativeUnavailable("self-test failed")
    w = torch.randn(192, 64, generator=gen).bfloat16()
    x = torch.randn(1, 64, generator=gen).bfloat16()
    vnni = w.view(3, 64, 32, 2).transpose(1, 2).contiguous()  # [N/64][K/2][64][2]
    got = kernel.gemv_vnni64(x, vnni.data_ptr(), 192, 64)
    if not torch.allclose(got.float(), (x.float() @ w.float().T), rtol=2e-2, atol=2e-2):
        raise NativeUnavailable("self-test failed (packed layout)")


KERNEL = NativeKernel("bf16_kernel", SOURCE, Bf16Kernel, _self_test)
load, build, why_unavailable = KERNEL.load, KERNEL.build, KERNEL.why_unavailable
