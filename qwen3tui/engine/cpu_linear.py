"""bf16 projections on the CPU: weights pre-packed once for oneDNN, decode through a C kernel.

F.linear hands oneDNN a plain row-major weight, which it re-blocks for its AMX/AVX-512 kernels
on every call. Packing each weight once into oneDNN's own layout made bf16 decode about 20%
faster on this project's benchmark CPU (5.0 -> 6.1 tok/s for Qwen3-1.7B) with identical
output, and keeps 512-token prefill chunks about 10% faster than plain weights. The packed
weight replaces the original, so memory does not grow.

Decode multiplies one row by each weight, which is pure memory streaming: there the C kernel of
bf16_cpu_kernel reads the same packed buffer (when it has the layout the kernel knows, checked
per weight) at 29-30 GB/s against oneDNN's 23-24. It also takes the output head, which stays a
plain matrix (with tied embeddings it is the lookup table; a packed copy would cost 600 MB):
27 GB/s against 22 for F.linear. Where oneDNN has no bf16 here, the kernel serves the plain
layer weights too and prefill uses the C GEMM of bf16_cpu_gemm
(F.linear's bf16 fallback there is 4-6x slower).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import bf16_cpu_gemm, bf16_cpu_kernel
from .model import Qwen3, layer_projections
from .moe import moe_blocks


class PackedLinear(nn.Module):
    def __init__(
        self, weight: torch.Tensor, kernel: bf16_cpu_kernel.Bf16Kernel | None = None
    ) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.weight = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), 1)
        # The packed buffer's address, where the C kernel can read it (self.weight keeps it).
        self.kernel_ptr = _vnni64_address(self.weight, weight) if kernel is not None else None
        self.kernel = kernel if self.kernel_ptr is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel is not None and x.numel() == self.in_features:
            return self.kernel.gemv_vnni64(x, self.kernel_ptr, self.out_features, self.in_features)
        flat = x.reshape(-1, self.in_features)
        out = torch.ops.mkldnn._linear_pointwise(flat, self.weight, None, "none", [], "")
        return out.view(*x.shape[:-1], self.out_features)

    def row_call(self, x: torch.Tensor, y: torch.Tensor) -> Callable[[int], None] | None:
        """A decode step's product from x (in_features contiguous values) into y
        (out_features), bound once for cpu_decode; None without the C kernel."""
        if self.kernel is None or x.dtype != torch.bfloat16:
            return None
        return self.kernel.bind_gemv_vnni64(
            x, self.kernel_ptr, self.out_features, self.in_features, y
        )


class GemvLinear(nn.Module):
    """A plain bf16 weight: the C kernel for one row; for more, the C GEMM where given (CPUs
    without oneDNN bf16), else F.linear."""

    def __init__(
        self,
        weight: torch.Tensor,
        kernel: bf16_cpu_kernel.Bf16Kernel,
        gemm: bf16_cpu_gemm.Bf16Gemm | None = None,
    ) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight", weight.detach().contiguous())
        self.kernel = kernel if weight.dtype == torch.bfloat16 else None
        self.gemm = gemm if weight.dtype == torch.bfloat16 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel is not None and x.numel() == self.in_features and x.dtype == torch.bfloat16:
            out = self.kernel.gemv(x.reshape(1, self.in_features).contiguous(), self.weight)
            return out.view(*x.shape[:-1], self.out_features)
        if self.gemm is not None and x.dtype == torch.bfloat16:
            return self.gemm.matmul(x, self.weight)
        return F.linear(x, self.weight)

    def row_call(self, x: torch.Tensor, y: torch.Tensor) -> Callable[[int], None] | None:
        """PackedLinear.row_call for the plain weight."""
        if self.kernel is None or x.dtype != torch.bfloat16:
            return None
        return self.kernel.bind_gemv(x, self.weight, y)


def _vnni64_address(packed: torch.Tensor, weight: torch.Tensor) -> int | None:
    """The packed buffer's address if it holds `weight` as [N/64][K/2][64][2] (oneDNN's choice
    for AMX), else None. Checked on every weight: the layout is oneDNN's business and may
    differ by version, CPU or shape; a wrong guess would give wrong text, not a crash."""
    n, k = weight.shape
    if weight.dtype != torch.bfloat16 or n % 64 or k % 4:
        return None
    try:
        ptr = int(torch.ops.mkldnn.data_ptr(packed))
        if int(torch.ops.mkldnn._nbytes(packed)) != n * k * 2:
            return None
    except (AttributeError, RuntimeError):
        return None
    raw = torch.frombuffer((ctypes.c_int16 * (n * k)).from_address(ptr), dtype=torch.int16)
    gen = torch.Generator().manual_seed(n * 7919 + k)
    rows = torch.randint(0, n, (4096,), generator=gen)
    cols = torch.randint(0, k, (4096,), generator=gen)
    pos = (rows // 64) * (64 * k) + (cols // 2) * 128 + (rows % 64) * 2 + cols % 2
    if not torch.equal(raw[pos], weight.detach().view(torch.int16)[rows, cols]):
        return None
    return ptr


def available() -> bool:
    """Either the private oneDNN packing ops or the bf16 C kernel work here."""
    return _onednn_available() or bf16_cpu_kernel.load() is not None


def _onednn_available() -> bool:
    try:
        w = torch.zeros(8, 8, dtype=torch.bfloat16)
        PackedLinear(w)(torch.zeros(1, 8, dtype=torch.bfloat16))
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def pack_linears(model: Qwen3) -> Qwen3:
    """Pack every layer projection, one at a time, and give the output head the C kernel
    (sharing its tensor: no copy)."""
    kernel = bf16_cpu_kernel.load()
    onednn = _onednn_available()
    gemm = None if onednn or kernel is None else bf16_cpu_gemm.load()  # oneDNN's where it has bf16
    for owner, name in layer_projections(model):
        weight = getattr(owner, name).weight
        if onednn:
            setattr(owner, name, PackedLinear(weight, kernel))
        elif kernel is not None:
            setattr(owner, name, GemvLinear(weight, kernel, gemm))
    if kernel is not None:
        model.lm_head = GemvLinear(model.output_weight(), kernel, gemm)
    return model


def route_with_kernel(model: Qwen3) -> None:
    """Give each bf16 mixture-of-experts router the C kernel for one row: F.linear took 49-67
    us for Qwen3-30B-A3B's 128 x 2,048 router weight, about 3% of a decode step."""
    kernel = bf16_cpu_kernel.load()
    if kernel is None:
        return
    for block in moe_blocks(model):
        weight = block.router.weight
        if (
            weight.dtype == torch.bfloat16
            and weight.device.type == "cpu"
            and weight.is_contiguous()
        ):
            block.router.gemv = kernel.gemv
