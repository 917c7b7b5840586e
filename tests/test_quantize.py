"""int8 weight-only quantization: exact against its own dequantized weights, close to bf16, and
the C kernel's fast paths agree with PyTorch's plain path."""

from __future__ import annotations

import pytest
import torch

from qwen3tui.engine import bf16_cpu_gemm, int8_cpu_kernel, quantize
from qwen3tui.engine.config import Qwen3Config
from qwen3tui.engine.int8_cpu_kernel import quantized_rows
from qwen3tui.engine.kv_cache import KVCache
from qwen3tui.engine.native_build import NativeUnavailable
from qwen3tui.engine.quantize import Int8Linear, quantize_int8
from qwen3tui.engine.random_checkpoint import TINY_CONFIG, write_random_checkpoint
from qwen3tui.engine.weights import load_model

needs_kernel = pytest.mark.skipif(
    int8_cpu_kernel.load() is None,
    reason=f"int8 C kernel unavailable: {int8_cpu_kernel.why_unavailable()}",
)


@pytest.fixture(params=["vnni", "amx", "avx2"])
def cpu(request, monkeypatch) -> str:
    """Every kind of x86 CPU the kernel's prefill paths depend on, whichever runs the tests:
    VNNI without AMX (every row past one through the integer gemm, int8 activations), AMX
    (bf16 rows past AMX_KERNEL_ROWS through oneDNN on dequantized slabs), AVX2 alone (no
    integer gemm, no oneDNN bf16: bf16 activations throughout)."""
    kernel = int8_cpu_kernel.load()
    if kernel is None:
        pytest.skip(f"int8 C kernel unavailable: {int8_cpu_kernel.why_unavailable()}")
    if request.param != "avx2" and not kernel.gemm_rows:
        pytest.skip(f"this CPU has no VNNI dot products ({kernel.simd})")
    if request.param == "avx2":
        monkeypatch.setattr(kernel, "gemm_rows", 0)
        monkeypatch.setattr(quantize.device, "cpu_bf16_matmul", lambda: False)
    monkeypatch.setattr(quantize.device, "cpu_amx", lambda: request.param == "amx")
    return request.param


def _int8_activations(cpu: str, rows: int, dtype: torch.dtype) -> bool:
    """Whether a product of `rows` rows quantizes its activations to int8 on this kind of CPU."""
    if cpu == "avx2" or rows == 1:
        return False
    return not (cpu == "amx" and dtype == torch.bfloat16 and rows > quantize.AMX_KERNEL_ROWS)


@pytest.fixture
def plain(monkeypatch):
    """Int8Linear built while the kernel is unavailable: PyTorch's path on (out, in) weights."""
    monkeypatch.setattr(int8_cpu_kernel, "load", lambda: None)


def test_int8_linear_computes_with_its_dequantized_weights(cpu):
    torch.manual_seed(0)
    weight = torch.randn(96, 64)
    layer = Int8Linear(weight)
    q = layer.int8_weight()
    assert q.dtype == torch.int8 and q.shape == (96, 64) and layer.scale.shape == (96,)
    dequantized = q.float() * layer.scale[:, None]
    for rows in (1, 5, 40):  # the decode kernel, then the prefill paths of this kind of CPU
        x = torch.randn(rows, 64)
        if _int8_activations(cpu, rows, x.dtype):  # the integer gemm: exact on int8 steps
            assert torch.allclose(layer(x), quantized_rows(x) @ dequantized.T, atol=1e-4)
            assert _rel(layer(x), x @ dequantized.T) < 2e-2
        else:
            assert torch.allclose(layer(x), x @ dequantized.T, atol=1e-4)
    # Per-channel rounding error is at most half a step of that channel.
    assert ((dequantized - weight).abs() <= layer.scale[:, None] / 2 + 1e-6).all()


def test_plain_path_computes_with_its_dequantized_weights(plain):
    torch.manual_seed(0)
    layer = Int8Linear(torch.randn(96, 64))
    assert layer.kernel is None and layer.weight.shape == (96, 64)
    dequantized = layer.weight.float() * layer.scale[:, None]
    for rows in (1, 5, 40):
        x = torch.randn(rows, 64)
        assert torch.allclose(layer(x), x @ dequantized.T, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_kernel_matches_the_plain_path(dtype, cpu, monkeypatch):
    # 200 outputs: not a multiple of the kernel's 16-row blocks, so padding is exercised too.
    weight = (torch.randn(200, 256, generator=torch.Generator().manual_seed(1)) * 0.05).to(dtype)
    fast = Int8Linear(weight)
    assert fast.kernel is not None
    monkeypatch.setattr(int8_cpu_kernel, "load", lambda: None)
    slow = Int8Linear(weight)
    assert torch.equal(fast.int8_weight(), slow.weight) and torch.equal(fast.scale, slow.scale)
    gen = torch.Generator().manual_seed(2)
    # Every few-row kernel; 9 and 20 rows in 8-row calls where slabs would be fp32 (AVX2);
    # 33 rows: the prefill slab; with VNNI, up to 70 rows (more than one gemm call).
    for rows in (1, 2, 3, 4, 5, 6, 7, 8, 9, 20, 33, 64, 65, 70):
        x = torch.randn(1, rows, 256, generator=gen).to(dtype)
        a = fast(x)
        if _int8_activations(cpu, rows, dtype):  # the plain path on the same int8 steps
            b = slow(quantized_rows(x[0]).to(dtype)[None])
        else:
            b = slow(x)
        assert a.shape == b.shape == (1, rows, 200) and a.dtype == dtype
        # Both accumulate in fp32; only where the scale is applied and the rounding differ.
        assert _rel(a, b) < (1e-2 if dtype == torch.bfloat16 else 1e-5), rows


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.float() - want.float()).abs().max() / want.float().abs().max()).item()


@needs_kernel
def test_vnni_prefill_quantizes_each_group_of_activations(monkeypatch):
    """The integer gemm's activations: per row, each group of GROUP inputs in int8 steps of
    its own largest magnitude / 127; a row of zeros and a row's all-zero group stay finite."""
    kernel = int8_cpu_kernel.load()
    if not kernel.gemm_rows:
        pytest.skip(f"this CPU has no VNNI dot products ({kernel.simd})")
    gen = torch.Generator().manual_seed(7)
    q = torch.randint(-127, 128, (200, 264), dtype=torch.int8, generator=gen)  # K: a part group
    scale = torch.rand(200, generator=gen) + 0.5
    exact = q.float() * scale[:, None]
    x = torch.randn(kernel.gemm_rows + 6, 264, generator=gen) * 3
    x[1] = 0
    x[2, :64] = 0
    x[3, 70] = 1e4  # an outlier: only its own group's steps grow
    got = kernel.gemm(x, kernel.pack(q), scale)[:, :200]
    assert torch.isfinite(got).all() and torch.equal(got[1], torch.zeros(200))
    assert _rel(got, int8_cpu_kernel.quantized_rows(x) @ exact.T) < 1e-5
    want = x @ exact.T
    assert _rel(got[:3], want[:3]) < 2e-2 and _rel(got[4:], want[4:]) < 2e-2


@needs_kernel
def test_prefill_dequantizes_in_slabs(monkeypatch):
    weight = torch.randn(96, 64, generator=torch.Generator().manual_seed(3))
    layer = Int8Linear(weight)
    monkeypatch.setattr(layer.kernel, "gemm_rows", 0)  # a CPU without VNNI
    slabs = []
    dequantize_t = int8_cpu_kernel.Int8Kernel.dequantize_t
    monkeypatch.setattr(
        int8_cpu_kernel.Int8Kernel,
        "dequantize_t",
        lambda self, *a: slabs.append(a[2:4]) or dequantize_t(self, *a),
    )
    x = torch.randn(40, 64, generator=torch.Generator().manual_seed(4))  # past the 8-row calls
    whole = layer(x)
    monkeypatch.setattr(quantize, "SCRATCH_BYTES", 32 * 64 * 4)  # 32 rows at a time: 3 slabs
    assert torch.equal(layer(x), whole)
    assert slabs == [(0, 96), (0, 32), (32, 64), (64, 96)]
    dequantized = layer.int8_weight().float() * layer.scale[:, None]
    assert torch.allclose(whole, x @ dequantized.T, atol=1e-4)


@needs_kernel
@pytest.mark.skipif(bf16_cpu_gemm.load() is None, reason="no C bf16 GEMM here")
def test_bf16_prefill_without_onednn_bf16_runs_the_rows_through_the_bf16_gemm(monkeypatch):
    """Where oneDNN has no bf16 (AVX2), a bf16 prefill past INT8_GEMM_ROWS rows gives the int8
    rows to the C bf16 GEMM as bf16 integers, the scale applied to each fp32 sum before its one
    rounding: within one bf16 rounding of the exact product, slab by slab the same."""
    monkeypatch.setattr(quantize.device, "cpu_bf16_matmul", lambda: False)
    monkeypatch.setattr(int8_cpu_kernel.load(), "gemm_rows", 0)  # nor VNNI
    calls = []
    into = bf16_cpu_gemm.Bf16Gemm.into
    monkeypatch.setattr(
        bf16_cpu_gemm.Bf16Gemm, "into", lambda self, *a: calls.append(a[2].shape) or into(self, *a)
    )
    gen = torch.Generator().manual_seed(5)
    layer = Int8Linear(torch.randn(200, 264, generator=gen).bfloat16())  # a partial block
    exact = layer.int8_weight().double() * layer.scale32.double()[:200, None]
    for rows in (quantize.INT8_GEMM_ROWS, quantize.INT8_GEMM_ROWS + 1, 40):
        calls.clear()
        x = torch.randn(rows, 264, generator=gen).bfloat16()
        got = layer(x)
        assert got.dtype == torch.bfloat16 and got.shape == (rows, 200)
        want = x.double() @ exact.T
        slack = 1e-5 * (x.double().abs() @ exact.abs().T)
        assert ((got.double() - want).abs() <= want.abs() * 2**-8 + slack).all(), rows
        assert calls == ([] if rows <= quantize.INT8_GEMM_ROWS else [(rows, 200)]), rows
    monkeypatch.setattr(quantize, "SCRATCH_BYTES", 64 * 264 * 2)  # 64 rows at a time: 4 slabs
    calls.clear()
    assert torch.equal(layer(x), got) and calls == [(40, 64)] * 3 + [(40, 8)]


def test_kernel_is_optional(monkeypatch, tmp_path):
    # load() turns any failure into None, and Int8Linear then keeps PyTorch's path.
    monkeypatch.setenv("QWEN3TUI_HOME", str(tmp_path))
    monkeypatch.setenv("QWEN3TUI_CPU_KERNELS", "0")
    with pytest.raises(NativeUnavailable, match="turned off"):
        int8_cpu_kernel._load()
    monkeypatch.setenv("QWEN3TUI_CPU_KERNELS", "1")
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    with pytest.raises(NativeUnavailable, match="does not run"):
        int8_cpu_kernel._load()
    assert not (tmp_path / "cache" / "kernels").exists()


def _models(tmp_path):
    config = {**TINY_CONFIG, "vocab_size": 512}
    path = write_random_checkpoint(tmp_path, config=config, seed=1, std=0.08)
    cfg = Qwen3Config.from_dir(path)

    def load():
        return load_model(path, cfg, torch.device("cpu"), torch.bfloat16, 128)

    return cfg, load


def _run(model, cfg, ids):
    """Logits of a prefill, then of three one-token decode steps."""
    cache = KVCache(cfg, 128, torch.device("cpu"), torch.bfloat16)
    with torch.inference_mode():
        prefill = model(ids, 0, cache, last_only=False)
        steps = [model(ids[:, i : i + 1], ids.shape[1] + i, cache) for i in range(3)]
    return prefill, steps


def test_quantized_model_stays_close_to_the_full_precision_model(tmp_path):
    cfg, load = _models(tmp_path)
    full = load()
    quant = quantize_int8(load())
    linears = [m for m in quant.modules() if isinstance(m, Int8Linear)]
    assert len(linears) == 4 * cfg.num_hidden_layers + 1  # every projection and the head
    ids = torch.randint(0, 512, (1, 24), generator=torch.Generator().manual_seed(2))
    a, _ = _run(full, cfg, ids)
    b, _ = _run(quant, cfg, ids)
    rel = ((a.float() - b.float()).abs().max() / a.float().abs().max()).item()
    assert rel < 0.05, rel
    cosine = torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1)
    assert cosine.min().item() > 0.99


def test_kernel_model_gives_the_plain_quantized_models_logits(tmp_path, monkeypatch, cpu):
    cfg, load = _models(tmp_path)
    fast = quantize_int8(load())
    assert fast.lm_head.kernel is not None
    monkeypatch.setattr(int8_cpu_kernel, "load", lambda: None)
    slow = quantize_int8(load())
    ids = torch.randint(0, 512, (1, 20), generator=torch.Generator().manual_seed(3))
    (a, steps_a), (b, steps_b) = _run(fast, cfg, ids), _run(slow, cfg, ids)
    # int8 activations in the prefill (about 0.4% noise a product) reach the logits through
    # two layers of a 64-wide model, and the decode steps through the cache the prefill
    # wrote; with bf16 activations throughout only rounding differs.
    noisy = _int8_activations(cpu, 20, torch.bfloat16)
    assert _rel(a, b) < (5e-2 if noisy else 1e-2)
    for x, y in zip(steps_a, steps_b, strict=True):  # decode: the one-row kernel
        assert _rel(x, y) < (5e-2 if noisy else 1e-2)
        assert noisy or torch.equal(x.argmax(-1), y.argmax(-1))


@needs_kernel
def test_kernel_builds_into_its_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("QWEN3TUI_HOME", str(tmp_path))
    kernel = int8_cpu_kernel._load()  # compiles, loads and self-tests
    assert isinstance(kernel, int8_cpu_kernel.Int8Kernel)
    assert len(list((tmp_path / "cache" / "kernels").glob("int8_kernel-*"))) == 1
