"""The bf16 C GEMV kernel, on plain weights and on oneDNN's packed ones, and every combination
pack_linears makes of it and oneDNN, compute what the plain bf16 model computes."""

from __future__ import annotations

import pytest
import torch

from qwen3tui.engine import bf16_cpu_kernel, cpu_linear
from qwen3tui.engine.config import Qwen3Config
from qwen3tui.engine.kv_cache import KVCache
from qwen3tui.engine.random_checkpoint import TINY_CONFIG, write_random_checkpoint
from qwen3tui.engine.weights import load_model

pytestmark = pytest.mark.skipif(not cpu_linear.available(), reason="no fast bf16 path here")


def _need_kernel():
    if bf16_cpu_kernel.load() is None:
        pytest.skip(f"bf16 C kernel unavailable: {bf16_cpu_kernel.why_unavailable()}")


def _need_onednn():
    if not cpu_linear._onednn_available():
        pytest.skip("no oneDNN bf16 on this CPU")


@pytest.mark.parametrize("path", ["packed+kernel", "plain+kernel", "packed"])
def test_every_fast_path_gives_the_plain_models_logits(tmp_path, monkeypatch, path):
    if "kernel" in path:
        _need_kernel()
    else:
        monkeypatch.setattr(bf16_cpu_kernel, "load", lambda: None)
    if "packed" in path:
        _need_onednn()
    else:
        monkeypatch.setattr(cpu_linear, "_onednn_available", lambda: False)
    path_ = write_random_checkpoint(tmp_path, config={**TINY_CONFIG, "vocab_size": 512}, std=0.08)
    cfg = Qwen3Config.from_dir(path_)
    plain = load_model(path_, cfg, torch.device("cpu"), torch.bfloat16, 128)
    fast = cpu_linear.pack_linears(load_model(path_, cfg, torch.device("cpu"), torch.bfloat16, 128))
    projections = [m for layer in fast.layers for m in (layer.inputs.qkv_proj, layer.output.o_proj,
                   layer.output.gate_up_proj, layer.output.down_proj)]  # fmt: skip
    kind = cpu_linear.PackedLinear if "packed" in path else cpu_linear.GemvLinear
    assert all(isinstance(m, kind) for m in projections)
    if "kernel" in path:
        # Projections decode through the kernel (on oneDNN's buffer where it has the layout
        # the kernel reads: not every tiny shape here); the head reads the (tied) embedding
        # table itself: no copy.
        assert any(m.kernel is not None for m in projections)
        assert fast.lm_head.weight.data_ptr() == fast.embed_tokens.weight.data_ptr()
    ids = torch.randint(0, 512, (1, 20), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        caches = [KVCache(cfg, 128, torch.device("cpu"), torch.bfloat16) for _ in range(2)]
        a = plain(ids, 0, caches[0], last_only=False)
        b = fast(ids, 0, caches[1], last_only=False)
        steps_a = [plain(ids[:, :1], 20 + i, caches[0]) for i in range(3)]  # decode (M = 1)
        steps_b = [fast(ids[:, :1], 20 + i, caches[1]) for i in range(3)]
    rel = ((a.float() - b.float()).abs().max() / a.float().abs().max()).item()
    assert rel < 1e-2
    for x, y in zip(steps_a, steps_b, strict=True):
        assert ((x.float() - y.float()).abs().max() / y.float().abs().max()).item() < 1e-2
        assert torch.equal(x.argmax(-1), y.argmax(-1))


def test_bf16_kernel_matches_a_float_product():
    _need_kernel()
    kernel = bf16_cpu_kernel.load()
    gen = torch.Generator().manual_seed(0)
    for n, k in ((8, 32), (45, 80), (300, 2048), (17, 6144)):  # row and k tails, real widths
        w = torch.randn(n, k, generator=gen).bfloat16()
        x = torch.randn(1, k, generator=gen).bfloat16()
        want = x.float() @ w.float().T
        got = kernel.gemv(x, w)
        assert got.shape == (1, n) and got.dtype == torch.bfloat16
        assert ((got.float() - want).abs().max() / want.abs().max()).item() < 1e-2


def test_bf16_kernel_reads_onednns_packed_weights():
    _need_kernel()
    _need_onednn()
    gen = torch.Generator().manual_seed(1)
    for n, k in ((4096, 2048), (2048, 6144), (192, 64)):  # Qwen3-1.7B's widths, a tiny one
        w = torch.randn(n, k, generator=gen).bfloat16()
        layer = cpu_linear.PackedLinear(w, bf16_cpu_kernel.load())
        if layer.kernel is None:
            pytest.skip("oneDNN packs differently here: the kernel is not used")
        x = torch.randn(1, 1, k, generator=gen).bfloat16()
        fast = layer(x)
        layer.kernel = None  # oneDNN's own product on the same buffer
        slow = layer(x)
        want = x.float() @ w.float().T
        assert fast.shape == slow.shape == (1, 1, n)
        for got in (fast, slow):
            assert ((got.float() - want).abs().max() / want.abs().max()).item() < 1e-2


def test_a_foreign_packed_layout_is_not_read():
    _need_onednn()
    w = torch.randn(128, 64).bfloat16()
    packed = torch.ops.mkldnn._reorder_linear_weight(w, 1)
    other = torch.randn(128, 64).bfloat16()  # a different matrix never matches the check
    assert cpu_linear._vnni64_address(packed, other) is None
    assert cpu_linear._vnni64_address(packed, w[:100]) is None  # rows not a multiple of 64
