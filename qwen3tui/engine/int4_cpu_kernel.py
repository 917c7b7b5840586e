"""A small C kernel for int4 weight-only products on x86 CPUs (decode), built at first use.

Decode reads every weight once per token, so 4-bit weights (with one bf16 scale, and for the
asymmetric form one bf16 minimum, per group of 32 or 64 along the input) read about half the
bytes of int8. The kernel (csrc/int4_matmul.c) quantizes the activation row to int8 per group
and sums 4-bit x 8-bit products in integers (one VNNI instruction per 64 products where the CPU
has it), applying the group's scales once per 16 rows; prefill dequantizes slabs of rows to
bf16 for the matmul, as the int8 path does. Built by native_build for the CPU it runs on;
`load()` returns None where it cannot be had, and quantize.Int4Linear keeps a PyTorch path.

The packed layout (`pack`): per block of 16 output rows, one 64-byte chunk per 8 inputs; byte
4r + i holds row r's code for input k + i in its low nibble and for k + 4 + i in its high one.
Scales and minimums: [N/16][K/G][16] bf16.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import torch

from .native_build import NATIVE, NativeUnavailable, OnceKernel, load_library

SOURCE = "int4_matmul.c"
BLOCK = 16  # output rows per packed block
_DTYPES = (torch.bfloat16, torch.float32)


def pack(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes 0..15, (N, Kp) with Kp a multiple of 8 -> (ceil(N/16), Kp/8, 16, 4) uint8."""
    n, kp = codes.shape
    padded = -(-n // BLOCK) * BLOCK
    if padded != n:
        codes = torch.cat([codes, codes.new_zeros(padded - n, kp)])
    c = codes.view(padded // BLOCK, BLOCK, kp // 8, 2, 4)
    return (c[:, :, :, 0] | (c[:, :, :, 1] << 4)).transpose(1, 2).contiguous()


def unpack(packed: torch.Tensor, n: int) -> torch.Tensor:
    """The (n, Kp) codes of a packed weight."""
    nb, k8 = packed.shape[:2]
    halves = torch.stack([packed & 15, packed >> 4], dim=3)  # (NB, Kp/8, 16, 2, 4)
    return halves.permute(0, 2, 1, 3, 4).reshape(nb * BLOCK, k8 * 8)[:n]


def pack_groups(values: torch.Tensor) -> torch.Tensor:
    """Per-(row, group) bf16 values (N, K/G) -> (ceil(N/16), K/G, 16)."""
    n, groups = values.shape
    padded = -(-n // BLOCK) * BLOCK
    if padded != n:
        values = torch.cat([values, values.new_zeros(padded - n, groups)])
    return values.view(padded // BLOCK, BLOCK, groups).transpose(1, 2).contiguous()


def unpack_groups(packed: torch.Tensor, n: int) -> torch.Tensor:
    return packed.transpose(1, 2).reshape(-1, packed.shape[1])[:n]


class Int4Kernel:
    def __init__(self, lib: ctypes.CDLL) -> None:
        i64, ptr, c_int = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
        lib.q4_simd.restype = ctypes.c_char_p
        self.simd: str = lib.q4_simd().decode()  # the instruction set it was built for
        self._gemv = lib.q4_gemv
        self._gemv.restype = c_int
        self._gemv.argtypes = [ptr, c_int, i64, ptr, ptr, ptr, ptr, i64, i64, i64, c_int]
        self._quantize = lib.q4_quantize
        self._quantize.restype = None
        self._quantize.argtypes = [ptr, c_int, i64, i64, i64, i64, c_int, ptr, ptr, ptr, i64, i64]
        self._quantize.argtypes += [c_int]
        self._dequant = lib.q4_dequant_t
        self._dequant.restype = None
        self._dequant.argtypes = [ptr, ptr, ptr, ptr, c_int, i64, i64, i64, i64, i64, c_int]

    def gemv(
        self,
        x: torch.Tensor,
        packed: torch.Tensor,
        scales: torch.Tensor,
        mins: torch.Tensor | None,
        group: int,
    ) -> torch.Tensor:
        """One row x (..., K) bf16 or fp32 -> (..., padded N) in x's dtype."""
        if x.dtype not in _DTYPES:
            raise ValueError(f"int4 kernel: takes bf16 or fp32 activations, not {x.dtype}")
        x = x.contiguous()
        nb, k8 = packed.shape[:2]
        y = torch.empty((*x.shape[:-1], nb * BLOCK), dtype=x.dtype)
        err = self._gemv(
            x.data_ptr(), x.dtype == torch.bfloat16, x.shape[-1], packed.data_ptr(),
            scales.data_ptr(), mins.data_ptr() if mins is not None else None, y.data_ptr(),
            nb * BLOCK, k8 * 8, group, torch.get_num_threads(),
        )  # fmt: skip
        if err:
            raise MemoryError("int4 kernel: no memory for the activations")
        return y

    def quantize(
        self,
        w: torch.Tensor,
        group: int,
        symmetric: bool,
        codes: torch.Tensor,
        scales: torch.Tensor,
        mins: torch.Tensor | None,
    ) -> None:
        """Fill the packed codes, scales (and mins) of a contiguous bf16/fp32 weight (N, K):
        what quantize._quantize_groups computes with PyTorch, in one pass."""
        n, k = w.shape
        nb, k8 = codes.shape[:2]
        self._quantize(
            w.data_ptr(), w.dtype == torch.bfloat16, n, k, k8 * 8, group, symmetric,
            codes.data_ptr(), scales.data_ptr(), mins.data_ptr() if mins is not None else None,
            0, nb * BLOCK, torch.get_num_threads(),
        )  # fmt: skip

    def dequantize_t(
        self,
        packed: torch.Tensor,
        scales: torch.Tensor,
        mins: torch.Tensor | None,
        group: int,
        n0: int,
        n1: int,
        out: torch.Tensor,
    ) -> torch.Tensor:
        """Fill out (Kp, n1 - n0), contiguous, with the dequantized rows n0..n1 transposed."""
        self._dequant(
            packed.data_ptr(), scales.data_ptr(), mins.data_ptr() if mins is not None else None,
            out.data_ptr(), out.dtype == torch.bfloat16, out.shape[1], n0, n1,
            packed.shape[1] * 8, group, torch.get_num_threads(),
        )  # fmt: skip
        return out


def load() -> Int4Kernel | None:
    """The kernel, built on first use and cached on disk; None where it cannot be had."""
    return _once.get()


def why_unavailable() -> str | None:
    return _once.unavailable_reason


def build(arch: Sequence[str] = NATIVE, extra: Sequence[str] = ()) -> Int4Kernel:
    """The kernel built with these flags and self-tested (tests build every variant)."""
    kernel = Int4Kernel(load_library("int4_kernel", SOURCE, arch, extra))
    _self_test(kernel)
    return kernel


def _self_test(kernel: Int4Kernel) -> None:
    """A wrong build (compiler, CPU) must not produce wrong text: compare with PyTorch."""
    gen = torch.Generator().manual_seed(0)
    n, k, group = 48, 64, 32
    codes = torch.randint(0, 16, (n, k), dtype=torch.uint8, generator=gen)
    scales = (torch.rand(n, k // group, generator=gen) + 0.5).bfloat16()
    mins = (torch.randn(n, k // group, generator=gen)).bfloat16()
    w = codes.float() * scales.float().repeat_interleave(group, 1)
    packed, ps = pack(codes), pack_groups(scales)
    x = torch.randn(1, k, generator=gen)
    for m, want_w in ((None, w - 8 * scales.float().repeat_interleave(group, 1)), (mins, None)):
        if m is not None:
            want_w = w + m.float().repeat_interleave(group, 1)
        pm = pack_groups(m) if m is not None else None
        got = kernel.gemv(x, packed, ps, pm, group)
        want = x @ want_w.T
        if not torch.allclose(got, want, rtol=0.02, atol=0.02 * want.abs().max().item()):
            raise NativeUnavailable("self-test failed (gemv)")
        out = kernel.dequantize_t(packed, ps, pm, group, 16, 48, torch.empty(k, 32))
        if not torch.allclose(out, want_w[16:48].T, rtol=1e-6, atol=1e-6):
            raise NativeUnavailable("self-test failed (dequantize)")


_once = OnceKernel(lambda: build())
