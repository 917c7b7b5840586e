"""The bf16 C GEMM (prefill on CPUs without oneDNN bf16) computes a float32 product of the same
bf16 inputs to within bf16 rounding, on odd row counts, every projection shape class and tails,
builds with warnings as errors for each instruction set this CPU runs, and a model's prefill
logits with it match those without it."""

from __future__ import annotations

import pytest
import torch

from qwen3tui.engine import bf16_cpu_gemm, bf16_cpu_kernel, cpu_linear
from qwen3tui.engine.config import Qwen3Config
from qwen3tui.engine.kv_cache import KVCache
from qwen3tui.engine.native_build import NATIVE, STRICT
from qwen3tui.engine.random_checkpoint import TINY_CONFIG, write_random_checkpoint
from qwen3tui.engine.weights import load_model

needs_kernel = pytest.mark.skipif(
    bf16_cpu_gemm.load() is None, reason=f"no bf16 GEMM here: {bf16_cpu_gemm.why_unavailable()}"
)

# Weight shapes (N, K): Qwen3-1.7B's four projection classes (q/k/v, o, gate/up, down), and
# tails of every loop: N not a multiple of the 2-column tile or the 64-row chunk, K not of 16
# (the scalar tail) or of the 512-input block, K below 16.
SHAPES = ((4096, 2048), (2048, 2048), (12288, 2048), (2048, 6144), (67, 88), (130, 1000), (3, 5))
ROWS = (1, 2, 5, 7, 129)  # below, at and past the 6-row tile


def _check(got: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> None:
    want = x.float() @ w.float().T
    assert got.dtype == torch.bfloat16 and got.shape == want.shape
    # fp32 sums in another order than PyTorch's, then one rounding to bf16 (2^-8 relative):
    # allow that rounding plus the fp32 reordering, far below any wrong product.
    slack = 1e-5 * (x.float().abs() @ w.float().abs().T)
    assert ((got.float() - want).abs() <= want.abs() * 2**-8 + slack).all()


@needs_kernel
@pytest.mark.parametrize("n,k", SHAPES)
def test_gemm_matches_a_float_product_within_bf16_rounding(n, k):
    kernel = bf16_cpu_gemm.load()
    gen = torch.Generator().manual_seed(n * 31 + k)
    w = torch.randn(n, k, generator=gen).bfloat16()
    rows = ROWS if n * k < 10_000_000 else (2, 7, 129)  # the biggest: fewer, for time
    for m in rows:
        x = torch.randn(m, k, generator=gen).bfloat16()
        _check(kernel.matmul(x, w), x, w)


@needs_kernel
def test_gemm_keeps_leading_dimensions_and_reads_a_strided_input():
    kernel = bf16_cpu_gemm.load()
    gen = torch.Generator().manual_seed(5)
    w = torch.randn(70, 48, generator=gen).bfloat16()
    x = torch.randn(1, 9, 96, generator=gen).bfloat16()[..., ::2]  # not contiguous
    got = kernel.matmul(x, w)
    assert got.shape == (1, 9, 70)
    _check(got.view(9, 70), x.reshape(9, 48), w)


@needs_kernel
@pytest.mark.parametrize(
    "arch", [NATIVE, (*NATIVE, "-mno-avx512f")], ids=["native", "avx2"]
)  # each removes features from this CPU's own set, so both run here
def test_gemm_builds_strictly_for_each_instruction_set(arch, tmp_path, monkeypatch):
    monkeypatch.setenv("QWEN3TUI_HOME", str(tmp_path))
    kernel = bf16_cpu_gemm.build(arch, STRICT)
    gen = torch.Generator().manual_seed(6)
    w = torch.randn(131, 1040, generator=gen).bfloat16()
    for m in ROWS:
        x = torch.randn(m, 1040, generator=gen).bfloat16()
        _check(kernel.matmul(x, w), x, w)


@needs_kernel
def test_prefill_logits_with_the_gemm_match_those_without(tmp_path, monkeypatch):
    if bf16_cpu_kernel.load() is None:
        pytest.skip("no bf16 decode kernel here")
    # The plain-weight modules, as on a CPU without oneDNN bf16 (this one may have it).
    monkeypatch.setattr(cpu_linear, "_onednn_available", lambda: False)
    path = write_random_checkpoint(tmp_path, config={**TINY_CONFIG, "vocab_size": 512}, std=0.08)
    cfg = Qwen3Config.from_dir(path)
    models = {}
    for name, gemm in (("with", bf16_cpu_gemm.load), ("without", lambda: None)):
        monkeypatch.setattr(bf16_cpu_gemm, "load", gemm)
        model = load_model(path, cfg, torch.device("cpu"), torch.bfloat16, 128)
        models[name] = cpu_linear.pack_linears(model)
    layer = models["with"].layers[0].output.gate_up_proj
    assert isinstance(layer, cpu_linear.GemvLinear) and layer.gemm is not None
    assert models["without"].layers[0].output.gate_up_proj.gemm is None
    ids = torch.randint(0, 512, (1, 21), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        a, b = (
            m(ids, 0, KVCache(cfg, 128, torch.device("cpu"), torch.bfloat16), last_only=False)
            for m in (models["with"], models["without"])
        )
    assert ((a.float() - b.float()).abs().max() / b.float().abs().max()).item() < 1e-2


def test_where_onednn_has_bf16_the_gemm_is_not_used(tmp_path, monkeypatch):
    if bf16_cpu_kernel.load() is None:
        pytest.skip("no bf16 decode kernel here")
    monkeypatch.setattr(cpu_linear, "_onednn_available", lambda: True)
    monkeypatch.setattr(cpu_linear, "PackedLinear", lambda w, k: torch.nn.Linear(1, 1))
    path = write_random_checkpoint(tmp_path, config={**TINY_CONFIG, "vocab_size": 512}, std=0.08)
    cfg = Qwen3Config.from_dir(path)
    model = cpu_linear.pack_linears(load_model(path, cfg, torch.device("cpu"), torch.bfloat16, 128))
    assert model.lm_head.gemm is None  # the head keeps F.linear (oneDNN) for many rows
