"""--quantize int8 quantizes each projection (and each layer's experts) as soon as its weights are
loaded: the same model as quantizing afterwards, without ever holding the whole model in full
precision (for an FP8 checkpoint: dequantized one tensor at a time, straight into int8)."""

from __future__ import annotations

import pytest
import torch

from qwen3tui.engine import quantize, weights
from qwen3tui.engine.config import Qwen3Config
from qwen3tui.engine.kv_cache import KVCache
from qwen3tui.engine.moe import ExpertList, moe_blocks
from qwen3tui.engine.quantize import Int8Linear, quantize_int8
from qwen3tui.engine.random_checkpoint import TINY_CONFIG, TINY_MOE_CONFIG, write_random_checkpoint

# Layers outweigh the embedding, so holding them all in bf16 would show.
SHAPES = {"vocab_size": 64, "intermediate_size": 256, "num_hidden_layers": 4}
VARIANTS = {
    "dense": {**TINY_CONFIG, **SHAPES},
    "moe": {**TINY_MOE_CONFIG, **SHAPES, "moe_intermediate_size": 64},
    "dense-fp8": {**TINY_CONFIG, **SHAPES},
}


@pytest.fixture(params=sorted(VARIANTS))
def checkpoint(request, tmp_path):
    block = (32, 32) if request.param.endswith("fp8") else None
    return write_random_checkpoint(
        tmp_path, config=VARIANTS[request.param], seed=4, std=0.08, fp8_block=block
    )


def load(path, quantize=None):
    config = Qwen3Config.from_dir(path)
    return weights.load_model(
        path, config, torch.device("cpu"), torch.bfloat16, 64, quantize=quantize
    )


def logits(model, path) -> torch.Tensor:
    config = Qwen3Config.from_dir(path)
    cache = KVCache(config, 64, torch.device("cpu"), torch.bfloat16)
    ids = torch.randint(0, config.vocab_size, (1, 12), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        return torch.cat([model(ids, 0, cache, last_only=False), model(ids[:, :1], 12, cache)], 1)


def test_quantizing_while_loading_gives_the_model_quantizing_afterwards_gives(checkpoint):
    afterwards = quantize_int8(load(checkpoint))
    at_load = load(checkpoint, quantize="int8")
    assert torch.equal(logits(at_load, checkpoint), logits(afterwards, checkpoint))
    for block in moe_blocks(at_load):
        assert isinstance(block.experts, ExpertList)
    assert isinstance(at_load.lm_head, Int8Linear)


def full_precision_bytes(model) -> int:
    """Bytes of floating-point weights the model holds outside its int8 modules."""
    total = 0
    for module in model.modules():
        if isinstance(module, Int8Linear):
            continue
        for p in module.parameters(recurse=False):
            if p.is_floating_point() and not p.is_meta:
                total += p.numel() * p.element_size()
    return total


def test_the_full_precision_model_never_exists_whole(checkpoint, monkeypatch):
    full = full_precision_bytes(load(checkpoint))
    peaks = []
    make_hook = quantize.int8_as_loaded

    def watched(model):
        hook = make_hook(model)

        def loaded(name):
            peaks.append(full_precision_bytes(model))
            hook(name)

        return loaded

    monkeypatch.setattr(quantize, "int8_as_loaded", watched)
    load(checkpoint, quantize="int8")
    # At worst the embedding, the norms, the routers and one layer's pieces are in bf16.
    assert peaks and max(peaks) < full / 2


def test_int4_is_quantized_while_loading_too(checkpoint, monkeypatch):
    from qwen3tui.engine.quantize import Int4Linear, quantize_int4

    afterwards = quantize_int4(load(checkpoint))
    calls = []
    make_hook = quantize.int4_as_loaded
    monkeypatch.setattr(quantize, "int4_as_loaded", lambda m: calls.append(1) or make_hook(m))
    at_load = load(checkpoint, quantize="int4")
    assert calls == [1]  # the hook is used: no whole full-precision model first
    assert torch.equal(logits(at_load, checkpoint), logits(afterwards, checkpoint))
    assert isinstance(at_load.lm_head, Int4Linear) or at_load.lm_head is None
