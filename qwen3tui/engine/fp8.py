"""Qwen's FP8 checkpoints: `float8_e4m3fn` weights with one float32 scale per block.

`config.json` declares them under `quantization_config` (`quant_method: fp8`,
`weight_block_size: [128, 128]`). A quantized weight `W` of shape (n, k) comes with
`W_scale_inv` of shape (ceil(n / 128), ceil(k / 128)); the real weight is `W * scale` in each
block, edge blocks included. Which tensors are quantized is read from their dtypes, not assumed
(embeddings, norms, the router and the output head stay in bf16).

Here the weights are dequantized while loading, one tensor at a time and a slab of rows at a
time, straight into the model's parameter: never a second copy of the model. A path that keeps
FP8 weights for Hopper's FP8 matmuls plugs in at `Fp8Weight.read_raw`, which returns the stored
values and scales untouched.
"""

from __future__ import annotations

from typing import Protocol

import torch

# Rows dequantized at once: the float32 temporaries of a slab stay a few tens of MB.
SLAB_ROWS = 2048
FP8_DTYPES = (torch.float8_e4m3fn,)


class Source(Protocol):
    shape: tuple[int, ...]

    def read_into(self, dest: torch.Tensor) -> None: ...


def scale_name(weight_name: str) -> str:
    """`...q_proj.weight` -> `...q_proj.weight_scale_inv`, the name Qwen's FP8 files use."""
    return weight_name + "_scale_inv"


def scale_shape(shape: tuple[int, ...], block: tuple[int, int]) -> tuple[int, int]:
    """The scale grid a weight of `shape` needs: one per block, partial edge blocks included."""
    n, k = shape
    return (-(-n // block[0]), -(-k // block[1]))


class Fp8Weight:
    """A block-quantized weight in a checkpoint: its FP8 values and their scales.

    Quacks like a stored tensor (`shape`, `read_into`), so the loader places it like any
    other; `read_into` dequantizes into the destination's dtype.
    """

    def __init__(self, values: Source, scales: Source, block: tuple[int, int]) -> None:
        self.values, self.scales, self.block = values, scales, block
        self.shape = tuple(values.shape)

    def read_raw(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The stored float8 values and float32 scales, for a path that computes in FP8."""
        values = torch.empty(self.shape, dtype=torch.float8_e4m3fn, device=device)
        scales = torch.empty(self.scales.shape, dtype=torch.float32, device=device)
        self.values.read_into(values)
        self.scales.read_into(scales)
        return values, scales

    def read_into(self, dest: torch.Tensor) -> None:
        # MPS has no float8: dequantize there on the CPU and copy.
        work = dest if dest.device.type in ("cpu", "cuda") else torch.empty_like(dest, device="cpu")
        values, scales = self.read_raw(work.device)
        dequantize_into(work, values, scales, self.block)
        if work is not dest:
            dest.copy_(work)


def dequantize_into(
    dest: torch.Tensor, values: torch.Tensor, scales: torch.Tensor, block: tuple[int, int]
) -> None:
    """dest (n, k) = values * each block's scale, computed in float32, a slab at a time."""
    n, k = values.shape
    bn, bk = block
    step = max(bn, SLAB_ROWS // bn * bn)
    for r0 in range(0, n, step):
        rows = values[r0 : r0 + step]
        grid = scales[r0 // bn : r0 // bn + -(-rows.shape[0] // bn)]
        expanded = grid.repeat_interleave(bn, dim=0)[: rows.shape[0]]
        expanded = expanded.repeat_interleave(bk, dim=1)[:, :k]
        dest[r0 : r0 + step] = (rows.float() * expanded).to(dest.dtype)
