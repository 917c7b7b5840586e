"""Qwen's FP8 checkpoints: `float8_e4m3fn` weights with one float32 scale per block.

`config.json` declares them under `quantization_config` (`quant_method: fp8`,
`weight_block_size: [128, 128]`). A quantized weight `W` of shape (n, k) comes with
`W_scale_inv` of shape (ceil(n / 128), ceil(k / 128)); the real weight is `W * scale` in each
block, edge blocks included. Which tensors are quantized is read from their dtypes, not assumed
(embeddings, norms, the router and the output head stay in bf16).

On the CPU and MPS the weights are dequantized while loading, one tensor at a time and a slab
of rows at a time, straight into the model's parameter: never a second copy of the model. On
CUDA they stay FP8 (`fp8_linear.Fp8Linear`, read through `Fp8Weight.values` and `.scales`
untouched) and the decode kernels convert them in registers. `quantize_blocks` makes the same
format from bf16 weights (`--quantize fp8`).
"""

from __future__ import annotations

from typing import Protocol

import torch

# Rows dequantized at once: the float32 temporaries of a slab stay a few tens of MB.
SLAB_ROWS = 2048
FP8_DTYPES = (torch.float8_e4m3fn,)
FP8_MAX = 448.0  # the largest float8_e4m3fn value


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


def quantize_blocks(w: torch.Tensor, block: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(float8 values, float32 scale per block) with values * scale ~= w, as Qwen's FP8 files
    hold them: each block's largest magnitude maps to 448. On w's device, a slab of rows at a
    time (float32 temporaries of a few tens of MB)."""
    n, k = w.shape
    bn, bk = block
    values = torch.empty((n, k), dtype=torch.float8_e4m3fn, device=w.device)
    scales = torch.empty(scale_shape((n, k), block), dtype=torch.float32, device=w.device)
    cols = scales.shape[1]
    step = max(bn, SLAB_ROWS // bn * bn)
    for r0 in range(0, n, step):
        rows = w[r0 : r0 + step]
        r = rows.shape[0]
        grid_rows = -(-r // bn)
        padded = torch.zeros(grid_rows * bn, cols * bk, device=w.device)
        padded[:r, :k] = rows
        blocks = padded.view(grid_rows, bn, cols, bk)
        scale = blocks.abs().amax(dim=(1, 3)).clamp(min=1e-12) / FP8_MAX
        scales[r0 // bn : r0 // bn + grid_rows] = scale
        blocks /= scale[:, None, :, None]
        values[r0 : r0 + r] = padded[:r, :k].to(torch.float8_e4m3fn)
    return values, scales
