"""The compiled decode step (CUDA's fast path) checked on the CPU: Inductor compiles the same
whole-layer graph here, so a wrong cache write or mask in that graph fails this test."""

from __future__ import annotations

import pytest
import torch

from qwen3tui.engine.config import Qwen3Config
from qwen3tui.engine.decode_step import reduction_twin
from qwen3tui.engine.kv_cache import KVCache
from qwen3tui.engine.model import CompiledLayers, Qwen3


def tiny_model() -> Qwen3:
    config = Qwen3Config.from_dict(
        {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "vocab_size": 300,
            "max_position_embeddings": 1024,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1e6,
            "tie_word_embeddings": True,
            "model_type": "qwen3",
        }
    )
    torch.manual_seed(0)
    model = Qwen3(config, max_positions=1024)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    model.setup_rope(torch.device("cpu"), torch.float32)
    return model.eval()


@pytest.mark.filterwarnings("ignore")
def test_compiled_whole_layer_step_equals_the_plain_step_across_windows():
    model = tiny_model()
    config = model.config
    # What compile_layers builds for windows below flash_from (CUDA's long windows use flash
    # attention, which has no CPU kernel).
    compiled = CompiledLayers(
        steps=[
            torch.compile(reduction_twin(layer).decode, fullgraph=True) for layer in model.layers
        ],
        flash_from=1024,
        norm=torch.compile(model.norm, fullgraph=True, dynamic=False),
    )
    ids = torch.randint(0, config.vocab_size, (1, 300), generator=torch.Generator().manual_seed(1))
    plain = KVCache(config, 1024, torch.device("cpu"), torch.float32)
    fast = KVCache(config, 1024, torch.device("cpu"), torch.float32)
    with torch.inference_mode():
        model(ids[:, :250], 0, plain)
        model(ids[:, :250], 0, fast)
        # Windows of 256 and then 512 positions: one compiled graph serves both lengths.
        for p in range(250, 262):
            expected = model.decode_step(ids[:, p : p + 1], torch.tensor([p]), plain, 512)
            model.compiled = compiled
            try:
                window = 256 if p < 256 else 512
                got = model.decode_step(ids[:, p : p + 1], torch.tensor([p]), fast, window)
            finally:
                model.compiled = None
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    # The compiled step wrote the same keys and values where the plain one did.
    for layer in range(config.num_hidden_layers):
        torch.testing.assert_close(fast.keys[layer][:, :, :262], plain.keys[layer][:, :, :262])
        torch.testing.assert_close(fast.values[layer][:, :, :262], plain.values[layer][:, :, :262])


def test_a_chunk_after_cached_tokens_attends_the_same_through_the_flash_path():
    """CUDA's flash path states the chunk's mask as causal aligned to the end of the keys; on
    the CPU PyTorch applies the same bias by materializing it, which checks the alignment."""
    model = tiny_model()
    config = model.config
    ids = torch.randint(0, config.vocab_size, (1, 300), generator=torch.Generator().manual_seed(2))

    def run() -> torch.Tensor:
        cache = KVCache(config, 1024, torch.device("cpu"), torch.float32)
        with torch.inference_mode():
            model(ids[:, :150], 0, cache)
            return model(ids[:, 150:], 150, cache, last_only=False)  # 150 queries after 150

    masked = run()
    for layer in model.layers:
        layer.flash = True
    try:
        flash = run()
    finally:
        for layer in model.layers:
            layer.flash = False
    torch.testing.assert_close(flash, masked, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("start", [0, 150])
def test_a_padded_chunk_at_device_positions_equals_the_plain_prefill(start):
    """CUDA's prefill graphs: a chunk padded to its graph's length, positions on the device.
    The padding must change neither this chunk's logits nor any later step."""
    model = tiny_model()
    config = model.config
    ids = torch.randint(0, config.vocab_size, (1, 200), generator=torch.Generator().manual_seed(3))
    real, padded = 20, 32
    plain = KVCache(config, 1024, torch.device("cpu"), torch.float32)
    graphed = KVCache(config, 1024, torch.device("cpu"), torch.float32)
    chunk = ids[:, start : start + real]
    garbage = torch.full((1, padded - real), 7)
    with torch.inference_mode():
        if start:
            model(ids[:, :start], 0, plain)
            model(ids[:, :start], 0, graphed)
        expected = model(chunk, start, plain)[0, -1]
        got = model.prefill_chunk(
            torch.cat([chunk, garbage], dim=1),
            torch.arange(start, start + padded),
            torch.tensor([real - 1]),
            graphed,
            torch.tensor([0, padded], dtype=torch.int32),
        )
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
        # The next token overwrites the first padded position and never sees the rest.
        after = start + real
        nxt = ids[:, after : after + 1]
        torch.testing.assert_close(model(nxt, after, graphed), model(nxt, after, plain))
