"""Weight-only int8 quantization, done at load time.

Decode at batch 1 reads every weight once per token, so halving the bytes (bf16 -> int8) nearly
doubles the speed ceiling. Each output channel gets its own scale (symmetric, max-abs / 127);
activations stay in the compute dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .model import Qwen3, layer_projections

# The fused int8 kernel reads each weight once, ideal for decode, but is slow per row; past a
# few rows dequantize-then-matmul wins.
FUSED_MAX_ROWS = 8


class Int8Linear(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        w = weight.detach()
        scale = w.float().abs().amax(dim=1).clamp(min=1e-12) / 127.0
        q = torch.round(w.float() / scale[:, None]).clamp(-127, 127).to(torch.int8)
        self.register_buffer("weight", q)
        self.register_buffer("scale", scale.to(weight.dtype))
        self.out_features, self.in_features = q.shape
        # The fused int8 kernel exists for CPU and MPS; elsewhere dequantize per call.
        self.fused = weight.device.type in ("cpu", "mps")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        if self.fused and flat.shape[0] <= FUSED_MAX_ROWS:
            out = torch._weight_int8pack_mm(flat, self.weight, self.scale.to(x.dtype))
            return out.view(*x.shape[:-1], self.out_features)
        # Prefill is compute-bound: one dequantized copy per call feeds the fast matmul.
        return F.linear(x, self.weight.to(x.dtype) * self.scale.to(x.dtype)[:, None])


def quantize_int8(model: Qwen3) -> Qwen3:
    """Replace every projection (and the output head) with Int8Linear, one at a time."""
    for owner, name in layer_projections(model):
        setattr(owner, name, Int8Linear(getattr(owner, name).weight))
    # The output head reads a vocab x hidden matrix every token: quantize it too. With tied
    # embeddings the bf16 table stays for lookups (one row per token, cheap to read).
    model.lm_head = Int8Linear(model.output_weight())
    return model
