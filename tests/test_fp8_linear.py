"""FP8 weights kept as FP8 (fp8_linear.Fp8Linear): what CUDA loads from FP8 checkpoints and
what `--quantize fp8` makes. Here on the CPU, through the module's dequantizing forward (the
plain path); the decode kernels that read FP8 directly are tested in test_fp8_kernels.py.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from qwen3tui.engine.config import Qwen3Config
from qwen3tui.engine.engine import Engine
from qwen3tui.engine.errors import EngineError, ModelLoadError
from qwen3tui.engine.fp8 import quantize_blocks
from qwen3tui.engine.fp8_linear import Fp8Linear
from qwen3tui.engine.kv_cache import KVCache
from qwen3tui.engine.random_checkpoint import TINY_CONFIG, fp8_quantize, write_random_checkpoint
from qwen3tui.engine.weights import load_model

BLOCK = (128, 128)
# Every piece of the fused q/k/v and gate/up starts on a 128-row block: all four kept.
ALIGNED = {
    **TINY_CONFIG,
    "hidden_size": 160,  # two column blocks, the second partial
    "intermediate_size": 256,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "vocab_size": 512,
}
# k starts at row 192 and up at row 200: q/k/v and gate/up are dequantized, o and down kept.
MISALIGNED = {**ALIGNED, "num_attention_heads": 4, "head_dim": 48, "intermediate_size": 200}
PROJECTIONS = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")


def projections(model):
    layer = model.layers[0]
    return {
        "qkv_proj": layer.inputs.qkv_proj,
        "o_proj": layer.output.o_proj,
        "gate_up_proj": layer.output.gate_up_proj,
        "down_proj": layer.output.down_proj,
    }


def load(path, **kwargs):
    config = Qwen3Config.from_dir(path)
    return config, load_model(path, config, torch.device("cpu"), torch.float32, 64, **kwargs)


def logits(model, config):
    ids = torch.randint(0, config.vocab_size, (1, 12), generator=torch.Generator().manual_seed(3))
    cache = KVCache(config, 64, torch.device("cpu"), torch.float32)
    with torch.inference_mode():
        return model(ids, 0, cache, last_only=False)


@pytest.fixture(scope="module")
def aligned_fp8(tmp_path_factory):
    path = tmp_path_factory.mktemp("fp8-aligned")
    return write_random_checkpoint(path, config=ALIGNED, seed=4, std=0.08, fp8_block=BLOCK)


def test_quantize_blocks_makes_the_checkpoint_format():
    """One scale per 128x128 block (edge blocks partial), the block's largest value at 448:
    the same values and scales as Qwen's FP8 files (random_checkpoint writes them so)."""
    w = torch.randn(300, 200, generator=torch.Generator().manual_seed(0))
    values, scales = quantize_blocks(w, BLOCK)
    want_values, want_scales = fp8_quantize(w, BLOCK)
    assert values.dtype == torch.float8_e4m3fn and scales.shape == (3, 2)
    assert torch.equal(values.view(torch.uint8), want_values.view(torch.uint8))
    assert torch.equal(scales, want_scales)
    back = Fp8Linear(values, scales, BLOCK).dequantized(torch.float32)
    assert ((back - w).abs() <= w.abs() * 2**-4 + scales.max() * 2**-9).all()


def test_an_fp8_checkpoint_kept_in_fp8_computes_what_the_dequantized_load_computes(aligned_fp8):
    config, kept = load(aligned_fp8, keep_fp8=True)
    _, dequantized = load(aligned_fp8)
    for name, module in projections(kept).items():
        assert isinstance(module, Fp8Linear), name
        assert module.weight.dtype == torch.float8_e4m3fn
        assert torch.equal(module.dequantized(torch.float32), projections(dequantized)[name].weight)
    assert torch.equal(logits(kept, config), logits(dequantized, config))


def test_projections_whose_pieces_straddle_a_block_are_dequantized(tmp_path):
    path = write_random_checkpoint(tmp_path, config=MISALIGNED, seed=4, std=0.08, fp8_block=BLOCK)
    config, kept = load(path, keep_fp8=True)
    _, dequantized = load(path)
    kinds = {name: type(m).__name__ for name, m in projections(kept).items()}
    assert kinds == {
        "qkv_proj": "Linear",
        "o_proj": "Fp8Linear",
        "gate_up_proj": "Linear",
        "down_proj": "Fp8Linear",
    }
    assert torch.equal(logits(kept, config), logits(dequantized, config))


def test_quantize_fp8_turns_each_projection_into_fp8_blocks_as_it_loads(tmp_path):
    path = write_random_checkpoint(tmp_path, config=ALIGNED, seed=4, std=0.08)
    config, fp8 = load(path, quantize="fp8")
    _, plain = load(path)
    for name, module in projections(fp8).items():
        assert isinstance(module, Fp8Linear), name
        values, scales = quantize_blocks(projections(plain)[name].weight, BLOCK)
        assert torch.equal(module.weight.view(torch.uint8), values.view(torch.uint8))
        assert torch.equal(module.scale, scales)
    assert fp8.lm_head is None  # tied: the embedding table stays as it was (bf16 in Qwen's)
    got, want = logits(fp8, config), logits(plain, config)
    # e4m3 keeps 3 mantissa bits: ~10% on these random logits; unrelated ones would be ~140%.
    assert ((got - want).norm() / want.norm()).item() < 0.2


def test_an_fp8_checkpoint_quantized_to_int8_goes_through_the_dequantized_weights(aligned_fp8):
    from qwen3tui.engine.quantize import Int8Linear

    config, kept = load(aligned_fp8, keep_fp8=True, quantize="int8")
    _, plain = load(aligned_fp8, quantize="int8")
    assert all(isinstance(m, Int8Linear) for m in projections(kept).values())
    assert torch.equal(logits(kept, config), logits(plain, config))


def test_a_nan_in_kept_fp8_weights_is_a_one_line_error(tmp_path):
    path = write_random_checkpoint(tmp_path, config=ALIGNED, fp8_block=BLOCK)
    tensors = load_file(str(path / "model.safetensors"))
    name = "model.layers.1.mlp.down_proj.weight"
    raw = tensors[name].view(torch.uint8).clone()
    raw[3, 5] = 0x7F  # float8_e4m3fn's NaN
    tensors[name] = raw.view(torch.float8_e4m3fn)
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelLoadError) as err:
        load(path, keep_fp8=True)
    assert name in str(err.value) and "NaN" in str(err.value) and "\n" not in str(err.value)


def test_quantize_fp8_off_cuda_is_refused_in_one_line(aligned_fp8):
    with pytest.raises(EngineError) as err:
        Engine.load(str(aligned_fp8), device="cpu", quantize="fp8")
    assert "--quantize fp8 needs a CUDA GPU" in str(err.value) and "\n" not in str(err.value)
