"""The decode kernels on FP8 weights (fast_decode.py, triton_kernels.gemv with FP8) against
PyTorch references on the same weights dequantized: each projection against float64, the
whole step against the plain step (which dequantizes in Fp8Linear.forward).

The `cuda` tests run on a CUDA GPU (`pytest -m cuda`). The others run the same kernels on the
CPU through Triton's interpreter where Triton is installed (CUDA machines, or a CPU machine
with `pip install triton`); without it they are skipped.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
import triton_interpreter
from kernel_models import dense_config, random_qwen3, rel_err, rms_norm, step_against_plain  # noqa: F401

from qwen3tui.engine.fast_decode import GemvShape
from qwen3tui.engine.fp8_linear import Fp8Linear
from qwen3tui.engine.kv_cache import KVCache
from qwen3tui.engine.model import Qwen3, layer_projections

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# (hidden, intermediate, query heads, KV heads, head_dim)
GPU_SHAPES = {
    "1.7B": (2048, 6144, 16, 8, 128),
    "4B": (2560, 9728, 32, 8, 128),
    "8B": (4096, 12288, 32, 8, 128),
    "14B": (5120, 17408, 40, 8, 128),
    # hidden not a multiple of 128 (partial scale blocks), rows not a multiple of any program
    "odd": (2000, 1152, 8, 2, 128),
}
CPU_SHAPE = (328, 384, 4, 2, 64)  # hidden 328: partial blocks and a partial last program


def fp8_model(shape, dtype: torch.dtype, device: str, layers: int = 1, positions: int = 512):
    """A random Qwen3 whose layer projections are FP8 blocks (quantized from random weights)."""
    model = random_qwen3(dense_config(shape, layers), dtype, device, positions)
    for owner, name in layer_projections(model):
        setattr(owner, name, Fp8Linear.quantized(getattr(owner, name).weight))
    return model.eval()


def check_projections(
    model: Qwen3, shapes: dict[str, GemvShape] | None = None, tol: float = 1e-5,
    scale: float = 1.0,
) -> list[float]:  # fmt: skip
    """Each FP8 projection kernel of layer 0 against float64 on the dequantized weights and
    the input (RMSNorm first where the kernel has it), within relative error `tol`; the
    errors (qkv, o, gate_up, down). `scale`: the o and down inputs' size."""
    from qwen3tui.engine.fast_decode import FastDecoder

    device = model.rope_cos.device
    config = model.config
    cache = KVCache(config, 64, device, model.rope_cos.dtype)
    dec = FastDecoder(model, cache, shapes=shapes)
    layer, first = dec.layers[0], model.layers[0]
    modules = {
        "qkv": first.inputs.qkv_proj,
        "o": first.output.o_proj,
        "gate_up": first.output.gate_up_proj,
        "down": first.output.down_proj,
    }
    assert set(layer.scales) == set(modules)

    def w(name):
        return modules[name].dequantized(torch.float64)

    hidden = config.hidden_size
    x = torch.randn(hidden, device=device)
    with torch.inference_mode():
        dec.x.copy_(x)
        dec.qkv.fill_(float("nan"))
        dec.project("qkv", layer.qkv, dec.x, dec.qkv, norm=layer.norm, fp8=layer.scales["qkv"])
        errs = [rel_err(dec.qkv, w("qkv") @ rms_norm(x, layer.norm))]
        attended = torch.randn(dec.attended.numel(), device=device) * scale
        dec.attended.copy_(attended)
        dec.project("o", layer.o, dec.attended, dec.x, residual=True, fp8=layer.scales["o"])
        errs.append(rel_err(dec.x - x, w("o") @ attended.double()))
        dec.x.copy_(x)
        dec.act.fill_(float("nan"))
        dec.project(
            "gate_up", layer.gate_up, dec.x, dec.act, norm=layer.post_norm,
            fp8=layer.scales["gate_up"],
        )  # fmt: skip
        gate, up = (w("gate_up") @ rms_norm(x, layer.post_norm)).chunk(2)
        errs.append(rel_err(dec.act, F.silu(gate) * up))
        act = torch.randn(config.intermediate_size, device=device) * scale
        dec.act.copy_(act)
        dec.x.copy_(x)
        dec.project("down", layer.down, dec.act, dec.x, residual=True, fp8=layer.scales["down"])
        errs.append(rel_err(dec.x - x, w("down") @ act.double()))
    # A projection whose shape computes in fp16 (a bf16 model's default may) has fp16's
    # tolerance.
    limits = [
        max(tol, PROJECTION_TOLERANCE.get(dec.shapes[name].fp8_math, 0.0))
        for name in ("qkv", "o", "gate_up", "down")
    ]
    assert all(e < limit for e, limit in zip(errs, limits, strict=True)), (errs, limits)
    return errs


# fp16 products and sums: error grows with the K steps (1.7e-3 emulated at 136 steps).
PROJECTION_TOLERANCE = {"f16": 5e-3}


def check_dequantize(device: str) -> None:
    """The prefill's dequantizing kernel: exactly fp8.dequantize_into, edge blocks included."""
    from qwen3tui.engine import triton_kernels as k
    from qwen3tui.engine.fp8 import dequantize_into

    for n, kk in ((300, 200), (1000, 2000)):
        m = Fp8Linear.quantized(torch.randn(n, kk, device=device))
        for dtype in (torch.float32, torch.bfloat16):
            want = torch.empty(n, kk, dtype=dtype, device=device)
            dequantize_into(want, m.weight, m.scale, m.block)
            got = torch.full((n, kk), float("nan"), dtype=dtype, device=device)
            grid = (-(-n // 32), -(-kk // 256))
            k.dequantize_fp8[grid](
                m.weight, m.scale, got, n, kk, m.scale.shape[1], 32, 256, 128, 128
            )
            if dtype == torch.float32 or device == "cuda":
                assert torch.equal(got, want)
            else:  # the interpreter rounds fp32 to bf16 by truncation: one step at most
                torch.testing.assert_close(got.float(), want.float(), rtol=2**-7, atol=0)


def narrow_tiles(model: Qwen3) -> dict[str, GemvShape]:
    """Tiles of 128 columns and 16 rows: several column steps, a partial last program."""
    c = model.config
    qkv = (c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim
    h, i = c.hidden_size, c.intermediate_size
    return {
        "qkv": GemvShape(qkv, h, 16, 128, 4),
        "o": GemvShape(h, c.num_attention_heads * c.head_dim, 16, 128, 4),
        "gate_up": GemvShape(i, h, 16, 128, 4),
        "down": GemvShape(h, i, 16, 128, 4),
    }


TILES = ("default", "narrow")


def tiles_of(model: Qwen3, tiles: str) -> dict[str, GemvShape] | None:
    return narrow_tiles(model) if tiles == "narrow" else None


# The FP8 maths of triton_kernels.gemv beside the default "f32", and each one's relative error
# against float64. f16 rounds x * scale and each column's running sum to fp16, so its error
# grows with the K steps (~sqrt): 3e-4 to 5e-4 measured in the interpreter (3 steps); 1.7e-3
# in a PyTorch emulation at 136 steps (K 17,408 in 128-column tiles, the narrow tiles at 14B,
# the most these tests run; the swept shapes take at most 24). Far below the FP8 weights' own
# error (e4m3: ~3e-2).
MATHS = {"f16": 5e-3}


def with_math(model: Qwen3, tiles: str, math: str) -> dict[str, GemvShape]:
    """The tiles' shapes (the defaults or narrow_tiles) with FP8 math `math`."""
    from qwen3tui.engine.fast_decode import FastDecoder

    if tiles == "narrow":
        shapes = narrow_tiles(model)
    else:
        cache = KVCache(model.config, 8, model.rope_cos.device, model.rope_cos.dtype)
        shapes = FastDecoder(model, cache).shapes
    return {name: replace(s, fp8_math=math) for name, s in shapes.items() if name != "head"}


def check_math(model: Qwen3, tiles: str, math: str, scale: float = 1.0) -> list[float]:
    shapes = with_math(model, tiles, math)
    return check_projections(model, shapes, MATHS[math], scale)


# -- on the CPU, through Triton's interpreter -------------------------------------------------


def run_interpreted(code: str) -> None:
    """`code`, with this module's helpers, through Triton's interpreter (triton_interpreter)."""
    triton_interpreter.run_interpreted(__file__, code)


@pytest.mark.parametrize("tiles", list(TILES))
def test_fp8_projection_kernels_match_float64_in_the_interpreter(tiles):
    run_interpreted(f"""
model = fp8_model(CPU_SHAPE, torch.float32, "cpu")
check_projections(model, tiles_of(model, {tiles!r}))
""")


@pytest.mark.parametrize("math", list(MATHS))
@pytest.mark.parametrize("tiles", list(TILES))
def test_fp8_maths_match_float64_in_the_interpreter(math, tiles):
    run_interpreted(f"""
model = fp8_model(CPU_SHAPE, torch.float32, "cpu")
check_math(model, {tiles!r}, {math!r})
""")


def test_f16_math_cannot_overflow_on_large_activations_in_the_interpreter():
    """o and down inputs 1e5 times larger: single fp16 products would overflow (448 *
    1e5 * ~5e-4) were x * scale not brought into range first."""
    run_interpreted("""
model = fp8_model(CPU_SHAPE, torch.float32, "cpu")
check_math(model, "narrow", "f16", scale=1e5)
""")


def test_the_dequantizing_kernel_equals_dequantize_into_in_the_interpreter():
    run_interpreted('check_dequantize("cpu")')


def test_fp8_fast_step_equals_the_plain_step_in_the_interpreter():
    run_interpreted("""
model = fp8_model(CPU_SHAPE, torch.float32, "cpu", layers=2)
for got, want in step_against_plain(model, prompt=20, steps=3, window=64):
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
""")


# Whole steps on a math's shapes against the plain float32 step: relative error of the
# logits.
STEP_TOLERANCE = {"f16": 5e-3}


@pytest.mark.parametrize("math", list(MATHS))
def test_fp8_fast_step_with_each_math_is_near_the_plain_step_in_the_interpreter(math):
    run_interpreted(f"""
model = fp8_model(CPU_SHAPE, torch.float32, "cpu", layers=2)
shapes = with_math(model, "default", {math!r})
for got, want in step_against_plain(model, prompt=20, steps=2, window=64, shapes=shapes):
    assert rel_err(got, want.double()) < STEP_TOLERANCE[{math!r}], rel_err(got, want.double())
""")


# -- on a CUDA GPU ------------------------------------------------------------------------------


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("name", list(GPU_SHAPES))
@pytest.mark.parametrize("tiles", list(TILES))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
def test_fp8_projection_kernels_match_float64_on_cuda(name, tiles, dtype):
    model = fp8_model(GPU_SHAPES[name], dtype, "cuda")
    check_projections(model, tiles_of(model, tiles))


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("name", list(GPU_SHAPES))
@pytest.mark.parametrize("tiles", list(TILES))
@pytest.mark.parametrize("math", list(MATHS))
def test_fp8_maths_match_float64_on_cuda(name, tiles, math):
    model = fp8_model(GPU_SHAPES[name], torch.bfloat16, "cuda")
    check_math(model, tiles, math)


@pytest.mark.cuda
@needs_cuda
def test_f16_math_cannot_overflow_on_large_activations_on_cuda():
    model = fp8_model(GPU_SHAPES["4B"], torch.bfloat16, "cuda")
    check_math(model, "default", "f16", scale=1e5)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("math", list(MATHS))
def test_fp8_fast_step_with_each_math_is_near_the_plain_step_on_cuda(math):
    model = fp8_model((512, 1024, 8, 2, 128), torch.float32, "cuda", layers=2, positions=512)
    shapes = with_math(model, "default", math)
    for got, want in step_against_plain(model, prompt=248, steps=4, window=256, shapes=shapes):
        assert rel_err(got, want.double()) < STEP_TOLERANCE[math]


@pytest.mark.cuda
@needs_cuda
def test_the_dequantizing_kernel_equals_dequantize_into_on_cuda():
    check_dequantize("cuda")


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("window", [256, 4096])
def test_fp8_fast_step_equals_the_plain_step_on_cuda_in_float32(window):
    model = fp8_model((512, 1024, 8, 2, 128), torch.float32, "cuda", layers=2, positions=4096)
    for got, want in step_against_plain(model, prompt=window - 8, steps=4, window=window):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.cuda
@needs_cuda
def test_graph_replays_of_the_fp8_step_equal_the_plain_step(qwen3tui_home):
    """The engine's step (background-built kernels, CUDA graphs per bucket) on FP8 weights."""
    from qwen3tui.engine.decode_step import GraphedStep

    model = fp8_model((512, 1024, 8, 2, 128), torch.float32, "cuda", layers=2, positions=1024)
    config = model.config
    ids = torch.randint(0, config.vocab_size, (1, 262), device="cuda")
    plain = KVCache(config, 1024, torch.device("cuda"), torch.float32)
    fast = KVCache(config, 1024, torch.device("cuda"), torch.float32)
    step = GraphedStep(model, fast)
    assert step.wait_compiled(300), step.compile_error
    with torch.inference_mode():
        model(ids[:, :250], 0, plain)
        model(ids[:, :250], 0, fast)
        fast.tokens.extend(ids[0, :250].tolist())
        for p in range(250, 262):  # across the 256-position bucket boundary
            pos = torch.tensor([p], device="cuda")
            want = model.decode_step(ids[:, p : p + 1], pos, plain, 512)
            got = step(ids[:, p : p + 1], p)
            torch.testing.assert_close(got, want[0, -1], rtol=1e-4, atol=1e-4)
            fast.tokens.append(int(ids[0, p]))
