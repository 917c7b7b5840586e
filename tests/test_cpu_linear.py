"""Pre-packed oneDNN projections on the CPU compute what the plain bf16 model computes."""

from __future__ import annotations

import pytest
import torch

from qwen3tui.engine import cpu_linear
from qwen3tui.engine.config import Qwen3Config
from qwen3tui.engine.kv_cache import KVCache
from qwen3tui.engine.random_checkpoint import TINY_CONFIG, write_random_checkpoint
from qwen3tui.engine.weights import load_model

pytestmark = pytest.mark.skipif(not cpu_linear.available(), reason="no oneDNN bf16 on this CPU")


def test_packed_model_gives_the_plain_models_logits(tmp_path):
    path = write_random_checkpoint(tmp_path, config={**TINY_CONFIG, "vocab_size": 512}, std=0.08)
    cfg = Qwen3Config.from_dir(path)
    plain = load_model(path, cfg, torch.device("cpu"), torch.bfloat16, 128)
    packed = cpu_linear.pack_linears(
        load_model(path, cfg, torch.device("cpu"), torch.bfloat16, 128)
    )
    # oneDNN's packed weights where it has bf16 here, else the C kernel on the plain weights
    fast = cpu_linear.PackedLinear if cpu_linear._onednn_available() else cpu_linear.GemvLinear
    assert isinstance(packed.layers[0].output.gate_up_proj, fast)
    ids = torch.randint(0, 512, (1, 20), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        caches = [KVCache(cfg, 128, torch.device("cpu"), torch.bfloat16) for _ in range(2)]
        a = plain(ids, 0, caches[0], last_only=False)
        b = packed(ids, 0, caches[1], last_only=False)
        steps_a = [plain(ids[:, :1], 20 + i, caches[0]) for i in range(3)]  # decode (M = 1)
        steps_b = [packed(ids[:, :1], 20 + i, caches[1]) for i in range(3)]
    rel = ((a.float() - b.float()).abs().max() / a.float().abs().max()).item()
    assert rel < 1e-2
    for x, y in zip(steps_a, steps_b, strict=True):
        assert torch.equal(x.argmax(-1), y.argmax(-1))
