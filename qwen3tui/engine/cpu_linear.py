"""bf16 projections on the CPU through oneDNN with weights pre-packed once at load.

F.linear hands oneDNN a plain row-major weight, which it re-blocks for its AMX/AVX-512 kernels
on every call. Packing each weight once into oneDNN's own layout made bf16 decode about 20%
faster on this project's benchmark CPU (5.0 -> 6.1 tok/s for Qwen3-1.7B) with identical output.
The packed weight replaces the original, so memory does not grow.
"""

from __future__ import annotations

import torch
from torch import nn

from .model import Qwen3, layer_projections


class PackedLinear(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.weight = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        out = torch.ops.mkldnn._linear_pointwise(flat, self.weight, None, "none", [], "")
        return out.view(*x.shape[:-1], self.out_features)


def available() -> bool:
    """The private oneDNN ops exist in this torch build and accept a tiny bf16 product."""
    try:
        w = torch.zeros(8, 8, dtype=torch.bfloat16)
        PackedLinear(w)(torch.zeros(1, 8, dtype=torch.bfloat16))
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def pack_linears(model: Qwen3) -> Qwen3:
    """Pack every layer projection, one at a time. The output head stays a plain matrix: with
    tied embeddings it is also the lookup table, and a packed copy would cost 600 MB."""
    for owner, name in layer_projections(model):
        setattr(owner, name, PackedLinear(getattr(owner, name).weight))
    return model
