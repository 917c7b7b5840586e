"""A small C kernel for int4 weight-only products on x86 CPUs (decode), built at first use.

Decode reads every weight once per token, so 4-bit weights (with one bf16 scale, and for the
asymmetric form one bf16 minimum, per group of 32 or 64 along the input) read about half the
bytes of int8. The kernel (csrc/int4_matmul.c) quantizes the activation row to int8 per group
and sums 4-bit x 8-bit products in integers (one VNNI instruction per 64 products where the CPU
has it), applying the group's scales once per 16 rows. Prefill dequantizes slabs of rows to bf16
for a matmul where oneDNN has bf16, as the int8 path does; elsewhere (AVX2) up to 8 rows a call
go through `q4_gemm`, which unpacks each group's codes once for all of them. Built by
native_build for the CPU it runs on; `load()` returns None where it cannot be had, and
quantize.Int4Linear keeps a PyTorch path.

The packed layout (`pack`): per block of 16 output rows, one unit per two groups (2G inputs):
2G/8 chunks of 64 bytes, one per 8 inputs (byte 4r + i holds row r's code for input k + i in
its low nibble and for k + 4 + i in its high one), then 64 bytes of the rows' bf16 scales (the
unit's first group, then its second), then, asymmetric, 64 bytes of minimums the same way:
(ceil(N/16), Kp/(2G), 16G + 64 or 16G + 128) uint8. Keeping the scales inside the block's one
sequential stream made the kernel 13-15% faster than a separate scale array (one core).
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable

import torch

from .native_build import NativeKernel, NativeUnavailable, c_function, simd_name

SOURCE = "int4_matmul.c"
BLOCK = 16  # output rows per packed block
GEMM_ROWS = 64  # activation rows one q4_gemm call takes (Q4_GEMM_ROWS in the C file)
MAX_GROUP = 256  # inputs per scale q4_gemm takes (Q4_MAX_GROUP)
_DTYPES = (torch.bfloat16, torch.float32)


def padded_k(k: int, group: int) -> int:
    """Inputs the packed weight holds: whole units of two groups."""
    return -(-k // (2 * group)) * 2 * group


def unit_bytes(group: int, symmetric: bool) -> int:
    return 16 * group + (64 if symmetric else 128)


def is_symmetric(packed: torch.Tensor, group: int) -> bool:
    return packed.shape[2] == unit_bytes(group, True)


def pack(
    codes: torch.Tensor, scales: torch.Tensor, mins: torch.Tensor | None, group: int
) -> torch.Tensor:
    """uint8 codes 0..15 (N, Kp), bf16 scales and minimums (N, Kp/G), Kp a multiple of 2G ->
    (ceil(N/16), Kp/(2G), unit bytes) uint8; padding rows are zero."""
    n, kp = codes.shape
    units = kp // (2 * group)
    padded = -(-n // BLOCK) * BLOCK
    parts = [codes, scales, mins]
    if padded != n:
        parts = [
            t if t is None else torch.cat([t, t.new_zeros(padded - n, t.shape[1])]) for t in parts
        ]
    nb = padded // BLOCK
    c = parts[0].view(nb, BLOCK, kp // 8, 2, 4)
    c = (c[:, :, :, 0] | (c[:, :, :, 1] << 4)).transpose(1, 2)  # (NB, Kp/8, 16, 4)
    out = [c.reshape(nb, units, 16 * group)]
    for t in parts[1:]:
        if t is not None:
            g = t.to(torch.bfloat16).view(nb, BLOCK, units, 2).permute(0, 2, 3, 1)
            out.append(g.contiguous().view(torch.uint8).view(nb, units, 64))
    return torch.cat(out, dim=2)


def unpack(
    packed: torch.Tensor, n: int, group: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The codes (n, Kp), scales (n, Kp/G) and minimums (None when symmetric) of a packed
    weight (or of a slice of its blocks)."""
    nb, units = packed.shape[:2]
    kp = units * 2 * group
    c = packed[:, :, : 16 * group].reshape(nb, kp // 8, BLOCK, 4)
    halves = torch.stack([c & 15, c >> 4], dim=3)  # (NB, Kp/8, 16, 2, 4)
    codes = halves.permute(0, 2, 1, 3, 4).reshape(nb * BLOCK, kp)[:n]

    def groups(at: int) -> torch.Tensor:
        g = packed[:, :, at : at + 64].contiguous().view(torch.bfloat16).view(nb, units, 2, BLOCK)
        return g.permute(0, 3, 1, 2).reshape(nb * BLOCK, 2 * units)[:n]

    mins = None if is_symmetric(packed, group) else groups(16 * group + 64)
    return codes, groups(16 * group), mins


class Int4Kernel:
    def __init__(self, lib: ctypes.CDLL) -> None:
        i64, ptr, c_int = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
        self.simd = simd_name(lib.q4_simd)
        self._gemv = c_function(
            lib.q4_gemv, c_int, ptr, c_int, i64, ptr, c_int, ptr, i64, i64, i64, c_int
        )
        self._gemv_many = c_function(
            lib.q4_gemv_many, c_int, c_int, i64, c_int, i64, i64, i64, c_int, ptr, ptr, ptr, c_int
        )
        self._gemm = c_function(
            lib.q4_gemm, c_int, ptr, i64, c_int, i64, ptr, c_int, ptr, i64, i64, i64, c_int
        )
        self._quantize = c_function(
            lib.q4_quantize, None, ptr, c_int, i64, i64, i64, i64, c_int, ptr, i64, i64, c_int
        )
        self._dequant = c_function(
            lib.q4_dequant_t, None, ptr, c_int, ptr, c_int, i64, i64, i64, i64, i64, c_int
        )

    def gemv(self, x: torch.Tensor, packed: torch.Tensor, group: int) -> torch.Tensor:
        """One row x (..., K) bf16 or fp32 -> (..., padded N) in x's dtype."""
        x = _activations(x)
        y = torch.empty((*x.shape[:-1], packed.shape[0] * BLOCK), dtype=x.dtype)
        if self.bind_gemv(x, packed, group, y)(torch.get_num_threads()):
            raise MemoryError("int4 kernel: no memory for the activations")
        return y

    def bind_gemv(
        self, x: torch.Tensor, packed: torch.Tensor, group: int, y: torch.Tensor
    ) -> Callable[[int], int]:
        """`gemv` from x (K contiguous values) into y (padded N values), every pointer bound
        once: decode steps call it with the thread count alone; it returns non-zero where it
        had no memory for the activations."""
        nb, units, unit = packed.shape
        return functools.partial(
            self._gemv, x.data_ptr(), x.dtype == torch.bfloat16, x.numel(), packed.data_ptr(),
            unit != unit_bytes(group, True), y.data_ptr(), nb * BLOCK, units * 2 * group, group,
        )  # fmt: skip

    def gemv_many(
        self, xs: list[torch.Tensor], packed: list[torch.Tensor], group: int
    ) -> list[torch.Tensor]:
        """`gemv` of each x (K contiguous values) by its weight, all of one shape and dtype, in
        one call: each output is `gemv`'s bit for bit."""
        call = self.bind_gemv_many(xs[0], packed[0], group)
        nb = packed[0].shape[0]
        ys = [xs[0].new_empty(nb * BLOCK) for _ in xs]
        if call(
            *(pointers([t.data_ptr() for t in ts]) for ts in (xs, packed, ys)),
            torch.get_num_threads(),
        ):
            raise MemoryError("int4 kernel: no memory for the activations")
        return ys

    def bind_gemv_many(
        self, x: torch.Tensor, packed: torch.Tensor, group: int
    ) -> Callable[[ctypes.Array, ctypes.Array, ctypes.Array, int], int]:
        """`gemv_many` for weights shaped as `packed` and activations as x, bound once: call it
        with arrays of the activations', weights' and outputs' addresses (`pointers`) and the
        thread count; it returns non-zero where it had no memory for the activations."""
        nb, units, unit = packed.shape
        shape = (x.dtype == torch.bfloat16, x.numel(), unit != unit_bytes(group, True))
        call = functools.partial(self._gemv_many, *shape, nb * BLOCK, units * 2 * group, group)
        return lambda xs, ws, ys, threads: call(len(xs), xs, ws, ys, threads)

    def gemm(self, x: torch.Tensor, packed: torch.Tensor, group: int) -> torch.Tensor:
        """Rows x (M, K) bf16 or fp32 -> (M, padded N) in x's dtype, each row equal to `gemv`'s:
        GEMM_ROWS rows a call, the weights read once for all of them."""
        if group > MAX_GROUP:
            raise ValueError(f"int4 kernel: groups of at most {MAX_GROUP} inputs, not {group}")
        x = _activations(x)
        nb, units, unit = packed.shape
        y = torch.empty((x.shape[0], nb * BLOCK), dtype=x.dtype)
        for r in range(0, x.shape[0], GEMM_ROWS):
            rows = x[r : r + GEMM_ROWS]
            err = self._gemm(
                rows.data_ptr(), rows.shape[0], x.dtype == torch.bfloat16, x.shape[-1],
                packed.data_ptr(), unit != unit_bytes(group, True), y[r].data_ptr(),
                nb * BLOCK, units * 2 * group, group, torch.get_num_threads(),
            )  # fmt: skip
            if err:
                raise MemoryError("int4 kernel: no memory for the activations")
        return y

    def quantize(self, w: torch.Tensor, group: int, symmetric: bool, packed: torch.Tensor) -> None:
        """Fill the packed weight (see `pack`) of a contiguous bf16/fp32 weight (N, K): what
        quantize._quantize_groups computes with PyTorch, in one pass."""
        n, k = w.shape
        nb, units = packed.shape[:2]
        self._quantize(
            w.data_ptr(), w.dtype == torch.bfloat16, n, k, units * 2 * group, group, symmetric,
            packed.data_ptr(), 0, nb * BLOCK, torch.get_num_threads(),
        )  # fmt: skip

    def dequantize_t(
        self, packed: torch.Tensor, group: int, n0: int, n1: int, out: torch.Tensor
    ) -> torch.Tensor:
        """Fill out (Kp, n1 - n0), contiguous, with the dequantized rows n0..n1 transposed."""
        nb, units, unit = packed.shape
        self._dequant(
            packed.data_ptr(), unit != unit_bytes(group, True), out.data_ptr(),
            out.dtype == torch.bfloat16, out.shape[1], n0, n1, units * 2 * group, group,
            torch.get_num_threads(),
        )  # fmt: skip
        return out


def pointers(addresses: list[int]) -> ctypes.Array:
    """A C array of addresses, for `gemv_many`."""
    return (ctypes.c_void_p * len(addresses))(*addresses)


def _activations(x: torch.Tensor) -> torch.Tensor:
    if x.dtype not in _DTYPES:
        raise ValueError(f"int4 kernel: takes bf16 or fp32 activations, not {x.dtype}")
    return x.contiguous()


def _self_test(kernel: Int4Kernel) -> None:
    """A wrong build (compiler, CPU) must not produce wrong text: compare with PyTorch."""
    gen = torch.Generator().manual_seed(0)
    n, k, group = 48, 64, 32
    codes = torch.randint(0, 16, (n, k), dtype=torch.uint8, generator=gen)
    scales = (torch.rand(n, k // group, generator=gen) + 0.5).bfloat16()
    mins = (torch.randn(n, k // group, generator=gen)).bfloat16()
    s = scales.float().repeat_interleave(group, 1)
    x = torch.randn(1, k, generator=gen)
    for m, want_w in ((None, s * (codes.float() - 8)), (mins, None)):
        if m is not None:
            want_w = s * codes.float() + m.float().repeat_interleave(group, 1)
        packed = pack(codes, scales, m, group)
        got = kernel.gemv(x, packed, group)
        want = x @ want_w.T
        if not torch.allclose(got, want, rtol=0.02, atol=0.02 * want.abs().max().item()):
            raise NativeUnavailable("self-test failed (gemv)")
        rows = torch.cat([x, -2 * x, x.flip(1)])
        if not torch.equal(
            kernel.gemm(rows, packed, group),
            torch.cat([kernel.gemv(r[None], packed, group) for r in rows]),
        ):
            raise NativeUnavailable("self-test failed (gemm)")
        weights = [packed, packed.flip(0), packed]
        many = kernel.gemv_many(list(rows), weights, group)
        for r, p, got in zip(rows, weights, many, strict=True):
            if not torch.equal(got, kernel.gemv(r[None], p, group)[0]):
                raise NativeUnavailable("self-test failed (gemv_many)")
        out = kernel.dequantize_t(packed, group, 16, 48, torch.empty(k, 32))
        if not torch.allclose(out, want_w[16:48].T, rtol=1e-6, atol=1e-6):
            raise NativeUnavailable("self-test failed (dequantize)")


KERNEL = NativeKernel("int4_kernel", SOURCE, Int4Kernel, _self_test)
load, build, why_unavailable = KERNEL.load, KERNEL.build, KERNEL.why_unavailable
