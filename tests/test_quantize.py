"""int8 weight-only quantization: exact against its own dequantized weights, close to bf16."""

from __future__ import annotations

import torch

from qwen3tui.engine.config import Qwen3Config
from qwen3tui.engine.kv_cache import KVCache
from qwen3tui.engine.quantize import Int8Linear, quantize_int8
from qwen3tui.engine.random_checkpoint import TINY_CONFIG, write_random_checkpoint
from qwen3tui.engine.weights import load_model


def test_int8_linear_computes_with_its_dequantized_weights():
    torch.manual_seed(0)
    weight = torch.randn(96, 64)
    layer = Int8Linear(weight)
    assert layer.weight.dtype == torch.int8 and layer.scale.shape == (96,)
    dequantized = layer.weight.float() * layer.scale[:, None]
    for rows in (1, 5, 40):  # the fused decode kernel and the dequantizing prefill path
        x = torch.randn(rows, 64)
        assert torch.allclose(layer(x), x @ dequantized.T, atol=1e-4)
    # Per-channel rounding error is at most half a step of that channel.
    assert ((dequantized - weight).abs() <= layer.scale[:, None] / 2 + 1e-6).all()


def test_quantized_model_stays_close_to_the_full_precision_model(tmp_path):
    config = {**TINY_CONFIG, "vocab_size": 512}
    path = write_random_checkpoint(tmp_path, config=config, seed=1, std=0.08)
    cfg = Qwen3Config.from_dir(path)
    full = load_model(path, cfg, torch.device("cpu"), torch.bfloat16, 128)
    quant = quantize_int8(load_model(path, cfg, torch.device("cpu"), torch.bfloat16, 128))
    linears = [m for m in quant.modules() if isinstance(m, Int8Linear)]
    assert len(linears) == 4 * cfg.num_hidden_layers + 1  # every projection and the head
    ids = torch.randint(0, 512, (1, 24), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        a = full(ids, 0, KVCache(cfg, 128, torch.device("cpu"), torch.bfloat16), last_only=False)
        b = quant(ids, 0, KVCache(cfg, 128, torch.device("cpu"), torch.bfloat16), last_only=False)
    rel = ((a.float() - b.float()).abs().max() / a.float().abs().max()).item()
    assert rel < 0.05, rel
    cosine = torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1)
    assert cosine.min().item() > 0.99
