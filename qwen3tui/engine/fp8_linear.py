"""A projection that keeps its weight in FP8: float8_e4m3fn values and a float32 scale per block.

On CUDA, FP8 checkpoints load into these (weights.load_model with keep_fp8) and
`--quantize fp8` turns bf16 projections into them as they load: half the bytes of bf16, which
at batch 1 is half the time a decode step spends streaming weights. The decode kernels
(`fast_decode.py`, `triton_kernels.gemv` with FP8) read the values and scales directly;
`forward` (prefill, and decode before those kernels are built) dequantizes into the input's
dtype and multiplies, exactly as loading a dequantized checkpoint would have computed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .fp8 import dequantize_into, quantize_blocks, scale_shape
from .model import Qwen3, layer_projections

BLOCK = (128, 128)  # Qwen's FP8 releases; also what --quantize fp8 makes


class Fp8Linear(nn.Module):
    def __init__(self, values: torch.Tensor, scales: torch.Tensor, block: tuple[int, int]) -> None:
        super().__init__()
        if scales.shape != scale_shape(tuple(values.shape), block):
            raise ValueError(f"scales {tuple(scales.shape)} do not fit {tuple(values.shape)}")
        self.register_buffer("weight", values)  # (out, in) float8_e4m3fn
        self.register_buffer("scale", scales)  # (ceil(out / bn), ceil(in / bk)) float32
        self.block = tuple(block)
        self.out_features, self.in_features = values.shape

    @classmethod
    def empty(
        cls, out_features: int, in_features: int, block: tuple[int, int], device: torch.device
    ) -> Fp8Linear:
        """Storage to fill from a checkpoint (rows of fused projections piece by piece)."""
        values = torch.empty((out_features, in_features), dtype=torch.float8_e4m3fn, device=device)
        scales = torch.empty(
            scale_shape((out_features, in_features), block), dtype=torch.float32, device=device
        )
        return cls(values, scales, block)

    @classmethod
    def quantized(cls, weight: torch.Tensor, block: tuple[int, int] = BLOCK) -> Fp8Linear:
        """`weight` (out, in) in FP8 blocks, on its device."""
        with torch.no_grad():
            values, scales = quantize_blocks(weight.detach(), block)
        return cls(values, scales, block)

    def dequantized(self, dtype: torch.dtype) -> torch.Tensor:
        out = torch.empty(self.weight.shape, dtype=dtype, device=self.weight.device)
        if self.weight.is_cuda and _triton():
            # One kernel instead of a dozen PyTorch ops per slab: a 128-token prefill of
            # Qwen3-1.7B took 22 ms against 5.5 in bf16 with those (H200).
            from . import triton_kernels as k
            from .kernel_build import launch

            n, kk = self.weight.shape
            grid = (-(-n // 32), -(-kk // 256))
            launch(
                k.dequantize_fp8, grid, self.weight, self.scale, out, n, kk,
                self.scale.shape[1], 32, 256, *self.block,
            )  # fmt: skip
        else:
            dequantize_into(out, self.weight, self.scale, self.block)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.dequantized(x.dtype))

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, fp8 blocks {self.block}"


def _triton() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def fp8_as_loaded(model: Qwen3, block: tuple[int, int] = BLOCK) -> Callable[[str], None]:
    """A hook for weights.load_model (quantize="fp8"): each layer projection becomes an
    Fp8Linear as soon as its weights are in, so the bf16 model never exists whole. The output
    head and the embeddings stay as they are (Qwen's FP8 releases keep them in bf16)."""
    names = {id(m): n for n, m in model.named_modules()}
    projections = {
        f"{names[id(owner)]}.{name}.weight": (owner, name)
        for owner, name in layer_projections(model)
    }

    def loaded(param: str) -> None:
        if param in projections:
            owner, name = projections.pop(param)
            module = getattr(owner, name)
            if not isinstance(module, Fp8Linear):  # an FP8 checkpoint's are already
                setattr(owner, name, Fp8Linear.quantized(module.weight, block))

    return loaded
