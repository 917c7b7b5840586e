"""The one-row projection kernel (triton_kernels.gemv) against float64, for every projection
of a layer and the output head: RMSNorm in its prologue, SwiGLU, the residual added in place,
with one or two weight tiles in flight, tiles that divide the row or leave a partial one, a
row of one tile. (The FP8 forms: test_fp8_kernels.py.)

The `cuda` tests run on a CUDA GPU (`pytest -m cuda`); the others run the same kernel on the
CPU through Triton's interpreter where Triton is installed; without it they are skipped.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import triton_interpreter
from kernel_models import dense_config, random_qwen3, rel_err, rms_norm

from qwen3tui.engine.fast_decode import GemvShape
from qwen3tui.engine.kv_cache import KVCache
from qwen3tui.engine.model import Qwen3

# (hidden, intermediate, query heads, KV heads, head_dim): hidden 328 leaves a partial last
# tile of 128 columns and a partial last program of 16 rows; the o and down rows divide.
CPU_SHAPE = (328, 384, 4, 2, 64)
GPU_SHAPE = (2000, 1152, 8, 2, 128)


def check_projections(model: Qwen3, shapes: dict[str, GemvShape] | None, tol: float) -> None:
    """Each projection kernel of layer 0, and the head, against float64 on the same weights
    and input (RMSNorm first where the kernel has it), within relative error `tol`."""
    from qwen3tui.engine.fast_decode import FastDecoder

    device = model.rope_cos.device
    cache = KVCache(model.config, 64, device, model.rope_cos.dtype)
    dec = FastDecoder(model, cache, shapes=shapes)
    layer = dec.layers[0]
    x = torch.randn(model.config.hidden_size, device=device)
    with torch.inference_mode():
        dec.x.copy_(x)
        dec.qkv.fill_(float("nan"))
        dec.project("qkv", layer.qkv, dec.x, dec.qkv, norm=layer.norm)
        assert rel_err(dec.qkv, layer.qkv.double() @ rms_norm(x, layer.norm)) < tol
        # The residual projections: o over the attention's output, down over the SwiGLU's.
        for name, weight, inputs in (("o", layer.o, dec.attended), ("down", layer.down, dec.act)):
            given = torch.randn(inputs.numel(), device=device)
            inputs.copy_(given)
            dec.x.copy_(x)
            dec.project(name, weight, inputs, dec.x, residual=True)
            assert rel_err(dec.x, x.double() + weight.double() @ given.double()) < tol, name
        dec.x.copy_(x)
        dec.act.fill_(float("nan"))
        dec.project("gate_up", layer.gate_up, dec.x, dec.act, norm=layer.post_norm)
        gate, up = (layer.gate_up.double() @ rms_norm(x, layer.post_norm)).chunk(2)
        assert rel_err(dec.act, F.silu(gate) * up) < tol
        dec.x.copy_(x)
        dec.logits.fill_(float("nan"))
        dec.project("head", dec.head, dec.x, dec.logits, norm=dec.final_norm)
        want = dec.head.double() @ rms_norm(x, dec.final_norm)
        assert rel_err(dec.logits, want) < max(
            tol, 5e-3 if dec.logits.dtype != torch.float32 else 0
        )


def tiles(model: Qwen3, block_cols: int, depth: int) -> dict[str, GemvShape]:
    """Every projection in tiles of 16 rows and `block_cols` columns, `depth` in flight."""
    c = model.config
    qkv = (c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim
    h, i = c.hidden_size, c.intermediate_size
    sizes = {
        "qkv": (qkv, h),
        "o": (h, c.num_attention_heads * c.head_dim),
        "gate_up": (i, h),
        "down": (h, i),
        "head": (c.vocab_size, h),
    }
    return {n: GemvShape(r, k, 16, block_cols, 4, depth=depth) for n, (r, k) in sizes.items()}


# (columns a tile, tiles in flight): several tiles a row with one or two in flight, and
# tiles as wide as the row (one tile: the kernel takes one in flight whatever is asked).
LAYOUTS = [(128, 1), (128, 2), (512, 2)]


def run_interpreted(code: str) -> None:
    triton_interpreter.run_interpreted(__file__, code)


@pytest.mark.parametrize("block_cols,depth", LAYOUTS)
def test_projections_match_float64_in_the_interpreter(block_cols, depth):
    run_interpreted(f"""
model = random_qwen3(dense_config(CPU_SHAPE, 1), torch.float32, "cpu", 64)
check_projections(model, tiles(model, {block_cols}, {depth}), 1e-5)
""")


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("block_cols,depth", [*LAYOUTS, (0, 0)], ids=str)
def test_projections_match_float64_on_cuda(block_cols, depth, dtype):
    """(0, 0): the default shapes."""
    model = random_qwen3(dense_config(GPU_SHAPE, 1), dtype, "cuda", 64)
    shapes = tiles(model, block_cols, depth) if depth else None
    check_projections(model, shapes, 1e-5)
