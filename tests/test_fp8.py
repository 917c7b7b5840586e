"""Qwen's FP8 checkpoints: float8_e4m3fn weights with a float32 `weight_scale_inv` per 128x128
block, dequantized while loading. The reference is transformers on the same weights, which this
test dequantizes itself (independently of the engine's code) into a plain float32 checkpoint.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from test_model_parity import our_greedy, ref_greedy, rel_err

from qwen3tui.engine import weights
from qwen3tui.engine.config import Qwen3Config
from qwen3tui.engine.errors import ModelLoadError
from qwen3tui.engine.kv_cache import KVCache
from qwen3tui.engine.quantize import quantize_int8
from qwen3tui.engine.random_checkpoint import (
    TINY_CONFIG,
    TINY_MOE_CONFIG,
    write_random_checkpoint,
)
from qwen3tui.engine.weights import load_model

transformers = pytest.importorskip("transformers")

BLOCK = (128, 128)
# No dimension is a multiple of 128: every weight has partial edge blocks, most have two
# blocks along a dimension (160 = 128 + 32, 200 = 128 + 72, q = 4 x 48 = 192).
SHAPES = {
    "hidden_size": 160,
    "intermediate_size": 200,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 48,
    "vocab_size": 512,
    "bos_token_id": 0,
    "eos_token_id": 1,
}
VARIANTS = {
    "dense": {**TINY_CONFIG, **SHAPES},
    "moe": {**TINY_MOE_CONFIG, **SHAPES, "moe_intermediate_size": 136},
}


def dequantized_copy(fp8_dir, out_dir):
    """The checkpoint as plain float32: each block of values times its scale."""
    tensors = {}
    with safe_open(str(fp8_dir / "model.safetensors"), framework="pt") as f:
        names = list(f.keys())
        for name in names:
            if name.endswith("_scale_inv"):
                continue
            t = f.get_tensor(name)
            if t.dtype == torch.float8_e4m3fn:
                scale = f.get_tensor(name + "_scale_inv")
                n, k = t.shape
                grid = torch.kron(scale, torch.ones(BLOCK))[:n, :k]
                t = t.float() * grid
            tensors[name] = t.float()
    out_dir.mkdir()
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((fp8_dir / "config.json").read_text())
    del config["quantization_config"]
    (out_dir / "config.json").write_text(json.dumps(config))
    return out_dir


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def fp8_pair(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"fp8-{request.param}")
    path = write_random_checkpoint(
        root / "fp8", config=VARIANTS[request.param], seed=5, std=0.08, fp8_block=BLOCK
    )
    with safe_open(str(path / "model.safetensors"), framework="pt") as f:
        q_proj = f.get_slice("model.layers.0.self_attn.q_proj.weight")
        assert q_proj.get_dtype() == "F8_E4M3"
    plain = dequantized_copy(path, root / "plain")
    config = Qwen3Config.from_dir(path)
    assert config.fp8_block == BLOCK
    ours = load_model(path, config, torch.device("cpu"), torch.float32, 512)
    ref = transformers.AutoModelForCausalLM.from_pretrained(plain, dtype=torch.float32).eval()
    return config, ours, ref, path


def test_fp8_weights_dequantize_to_exactly_the_reference_weights(fp8_pair):
    config, ours, ref, _ = fp8_pair
    theirs = ref.model.layers[0].self_attn
    q = config.num_attention_heads * config.head_dim
    assert torch.equal(ours.layers[0].inputs.qkv_proj.weight[:q], theirs.q_proj.weight)


def test_fp8_checkpoint_gives_the_reference_logits_and_greedy_tokens(fp8_pair):
    config, ours, ref, _ = fp8_pair
    ids = torch.randint(0, config.vocab_size, (1, 20), generator=torch.Generator().manual_seed(1))
    cache = KVCache(config, 512, torch.device("cpu"), torch.float32)
    with torch.inference_mode():
        assert rel_err(ours(ids, 0, cache, last_only=False), ref(ids).logits) < 1e-4
    prompt = ids[0].tolist()
    cache = KVCache(config, 512, torch.device("cpu"), torch.float32)
    assert our_greedy(ours, cache, prompt, 64) == ref_greedy(ref, prompt, 64)


def test_fp8_checkpoint_loads_as_bfloat16_and_straight_into_int8(fp8_pair):
    config, ours, _, path = fp8_pair
    bf16 = load_model(path, config, torch.device("cpu"), torch.bfloat16, 64)
    w32 = ours.layers[0].output.o_proj.weight
    assert torch.equal(bf16.layers[0].output.o_proj.weight, w32.to(torch.bfloat16))
    quantize_int8(bf16)  # the experts of the MoE variant too
    cache = KVCache(config, 64, torch.device("cpu"), torch.bfloat16)
    with torch.inference_mode():
        assert torch.isfinite(bf16(torch.tensor([[3, 4, 5]]), 0, cache)).all()


def test_fp8_read_through_the_safetensors_library_loads_the_same_weights(fp8_pair, monkeypatch):
    """CUDA reads through the safetensors library (straight into device memory); the same
    path, pointed at the CPU here, must dequantize to the same weights."""
    config, ours, _, path = fp8_pair
    through_library = weights._open_weights

    monkeypatch.setattr(
        weights, "_open_weights", lambda file, device: through_library(file, torch.device("mps"))
    )
    again = weights.load_model(path, config, torch.device("cpu"), torch.float32, 512)
    a, b = ours.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- malformed FP8 files ------------------------------------------------------------------


@pytest.fixture
def fp8_checkpoint(tmp_path):
    return write_random_checkpoint(tmp_path, config=VARIANTS["dense"], fp8_block=BLOCK)


def rewrite(path, change) -> None:
    tensors = load_file(str(path / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})


def load_error(path) -> str:
    with pytest.raises(ModelLoadError) as err:
        load_model(path, Qwen3Config.from_dir(path), torch.device("cpu"), torch.float32, 64)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_a_missing_block_scale_is_a_one_line_error(fp8_checkpoint):
    rewrite(fp8_checkpoint, lambda t: t.pop("model.layers.1.mlp.up_proj.weight_scale_inv"))
    message = load_error(fp8_checkpoint)
    assert "model.safetensors" in message and "model.layers.1.mlp.up_proj.weight" in message
    assert "no block scales" in message


def test_a_block_scale_of_the_wrong_shape_is_a_one_line_error(fp8_checkpoint):
    name = "model.layers.0.self_attn.o_proj.weight_scale_inv"  # o_proj is (160, 192): 2 x 2

    def shrink(tensors):
        tensors[name] = tensors[name][:1, :1].clone()

    rewrite(fp8_checkpoint, shrink)
    message = load_error(fp8_checkpoint)
    assert f"{name} has shape (1, 1)" in message and "needs (2, 2)" in message


def test_fp8_weights_without_a_quantization_config_are_a_one_line_error(fp8_checkpoint):
    config = json.loads((fp8_checkpoint / "config.json").read_text())
    del config["quantization_config"]
    (fp8_checkpoint / "config.json").write_text(json.dumps(config))
    assert "declares no FP8 quantization_config" in load_error(fp8_checkpoint)


@pytest.mark.parametrize(
    ("quantization", "says"),
    [
        ({"quant_method": "awq", "bits": 4}, "quant_method is 'awq'"),
        ({"quant_method": "fp8", "weight_block_size": [128]}, r"weight_block_size is \[128\]"),
        ({"quant_method": "fp8", "weight_block_size": [128, 0]}, "two positive integers"),
    ],
)
def test_other_quantization_configs_are_refused_in_one_line(fp8_checkpoint, quantization, says):
    config = json.loads((fp8_checkpoint / "config.json").read_text())
    config["quantization_config"] = quantization
    (fp8_checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=says) as err:
        Qwen3Config.from_dir(fp8_checkpoint)
    assert "config.json" in str(err.value) and "\n" not in str(err.value)
