"""int4 weight-only quantization: group-wise codes and bf16 scales, the C kernel's int8-activation
products against PyTorch, the two prefill paths (dequantized slabs; rows through the kernel),
the plain PyTorch path where no kernel can be built, and the engine's quantize="int4"."""

from __future__ import annotations

import pytest
import torch

from qwen3tui.engine import int4_cpu_kernel, quantize
from qwen3tui.engine.config import Qwen3Config
from qwen3tui.engine.errors import EngineError
from qwen3tui.engine.kv_cache import KVCache
from qwen3tui.engine.quantize import Int4Linear, quantize_int4
from qwen3tui.engine.random_checkpoint import TINY_CONFIG, write_random_checkpoint
from qwen3tui.engine.weights import load_model

needs_kernel = pytest.mark.skipif(
    int4_cpu_kernel.load() is None,
    reason=f"int4 C kernel unavailable: {int4_cpu_kernel.why_unavailable()}",
)
FORMS = [(32, True), (64, True), (32, False), (64, False)]


@pytest.fixture
def plain(monkeypatch):
    """Int4Linear built while the kernel is unavailable: PyTorch's path on the same codes."""
    monkeypatch.setattr(int4_cpu_kernel, "load", lambda: None)


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.float() - want.float()).abs().max() / want.float().abs().max()).item()


@pytest.mark.parametrize("group,symmetric", FORMS)
def test_codes_and_scales_rebuild_the_weight_within_half_a_step(group, symmetric):
    w = torch.randn(40, 3 * group + 8, generator=torch.Generator().manual_seed(0))  # K padded
    layer = Int4Linear(w, group, symmetric)
    codes, scales, mins = layer.groups()
    assert codes.shape == (40, 4 * group) and int(codes.max()) <= 15  # whole units of 2 groups
    assert torch.equal(layer.int4_codes(), codes)
    deq = layer.dequantized()
    assert deq.shape == w.shape
    scale = scales.float().abs()
    step = scale.repeat_interleave(group, 1)[:, : w.shape[1]]
    # Half a step of rounding, a little more for the bf16-rounded scale; symmetric groups clip
    # the far side of the largest value by up to one step.
    bound = step * (1.0 if symmetric else 0.5) * 1.02 + 1e-6
    assert ((deq - w).abs() <= bound).all()
    assert (mins is None) == symmetric


@needs_kernel
@pytest.mark.parametrize("group,symmetric", FORMS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_the_kernels_quantizer_gives_pytorchs_numbers(group, symmetric, dtype):
    gen = torch.Generator().manual_seed(5)
    for n, k in ((200, 100), (16, group), (35, 3 * group)):  # padded rows and inputs
        w = torch.randn(n, k, generator=gen).to(dtype)
        w[3, :group] = 0  # an all-zero group
        w[5, 1], w[5, 2] = 2.0, -2.0  # a tie for the largest magnitude
        by_torch = quantize._quantize_groups(w, group, symmetric)
        by_kernel = quantize._quantize_groups(w, group, symmetric, int4_cpu_kernel.load())
        assert torch.equal(by_torch, by_kernel)


@pytest.fixture(params=["amx", "avx512-bf16", "avx2"])
def bf16_matmul(request, monkeypatch) -> bool:
    """Every kind of CPU, whichever runs the tests: with AMX, prefill past AMX_KERNEL_ROWS
    multiplies dequantized bf16 slabs with oneDNN (True); on AVX512-BF16 without AMX, and
    without oneDNN bf16 (AVX2, where a slab would be fp32), the rows go through the kernel."""
    monkeypatch.setattr(quantize.device, "cpu_bf16_matmul", lambda: request.param != "avx2")
    monkeypatch.setattr(quantize.device, "cpu_amx", lambda: request.param == "amx")
    return request.param == "amx"


@needs_kernel
@pytest.mark.parametrize("group,symmetric", FORMS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_the_kernel_computes_with_the_dequantized_weight(group, symmetric, dtype, bf16_matmul):
    gen = torch.Generator().manual_seed(1)
    for n, k in ((200, 256), (16, group), (33, 2 * group + 16)):  # block and group padding
        layer = Int4Linear(torch.randn(n, k, generator=gen).to(dtype), group, symmetric)
        assert layer.kernel is not None
        deq = layer.dequantized()
        x = torch.randn(1, k, generator=gen).to(dtype)
        got = layer(x)
        assert got.shape == (1, n) and got.dtype == dtype
        # int8 activations (per group) against the exact product: well under 2%.
        assert _rel(got, x.float() @ deq.T) < 2e-2
        few = torch.randn(3, k, generator=gen).to(dtype)  # a short prompt: the kernel, anywhere
        assert torch.equal(layer(few), torch.cat([layer(row) for row in few.split(1)]))
        rows = torch.randn(11, k, generator=gen).to(dtype)  # prefill
        if bf16_matmul and dtype == torch.bfloat16:  # dequantized slabs: exact, bf16 rounding
            assert _rel(layer(rows), rows.float() @ deq.T) < 1e-2
        else:  # rows through the kernel, 8 and then 3 a call: each row as decode computes it
            want = torch.cat([layer(row) for row in rows.split(1)])
            assert torch.equal(layer(rows), want)
            assert _rel(want, rows.float() @ deq.T) < 2e-2


@needs_kernel
@pytest.mark.parametrize("group,symmetric", [*FORMS, (128, True)])
def test_each_row_of_the_multi_row_kernel_is_the_one_row_kernels(group, symmetric):
    """q4_gemm unpacks each group's codes once for up to GEMM_ROWS rows: every count of rows,
    within one call or over several, gives row for row exactly what q4_gemv gives (the same
    integer sums, the same float steps)."""
    kernel = int4_cpu_kernel.load()
    gen = torch.Generator().manual_seed(2)
    layer = Int4Linear(torch.randn(48, 3 * group + 16, generator=gen), group, symmetric)
    per_call = int4_cpu_kernel.GEMM_ROWS
    for dtype in (torch.float32, torch.bfloat16):
        x = (torch.randn(per_call + 6, layer.in_features, generator=gen) * 3).to(dtype)
        x[2, :group] = 0  # an all-zero group of one row
        one_by_one = torch.cat([kernel.gemv(row, layer.weight, group) for row in x.split(1)])
        for m in (1, 2, 7, 8, 9, per_call - 1, per_call, per_call + 1, per_call + 6):
            assert torch.equal(kernel.gemm(x[:m], layer.weight, group), one_by_one[:m]), (dtype, m)


@needs_kernel
@pytest.mark.parametrize("group,symmetric", FORMS)
def test_many_weights_in_one_call_give_each_ones_own_products(group, symmetric):
    """q4_gemv_many (a mixture of experts' routed experts in one call): each weight with its
    own activation row gives exactly q4_gemv's output, whatever the count, with the activations
    shared or not and an input count short of the padded one."""
    kernel = int4_cpu_kernel.load()
    gen = torch.Generator().manual_seed(3)
    k = 3 * group + 16
    layers = [Int4Linear(torch.randn(80, k, generator=gen), group, symmetric) for _ in range(9)]
    weights = [layer.weight for layer in layers]
    for dtype in (torch.float32, torch.bfloat16):
        xs = [(torch.randn(k, generator=gen) * 3).to(dtype) for _ in layers]
        for count in (1, 2, 8, 9):
            for rows in (xs[:count], [xs[0]] * count):
                got = kernel.gemv_many(rows, weights[:count], group)
                for x, w, y in zip(rows, weights, got, strict=False):
                    assert torch.equal(y, kernel.gemv(x[None], w, group)[0]), (dtype, count)


@needs_kernel
def test_tiny_and_zero_activations_give_finite_sums():
    layer = Int4Linear(torch.randn(32, 128, generator=torch.Generator().manual_seed(6)))
    for value in (0.0, 1e-40, 1e-35):  # all-zero, denormal and tiny groups
        got = layer(torch.full((1, 128), value))
        assert torch.isfinite(got).all() and got.abs().max().item() < 1e-30


@pytest.mark.parametrize("group,symmetric", FORMS)
def test_the_plain_path_computes_with_the_same_weight(plain, group, symmetric):
    gen = torch.Generator().manual_seed(2)
    layer = Int4Linear(torch.randn(50, 96, generator=gen), group, symmetric)
    assert layer.kernel is None
    deq = layer.dequantized()
    for rows in (1, 7):
        x = torch.randn(rows, 96, generator=gen)
        assert torch.allclose(layer(x), x @ deq.T, atol=1e-4)


@needs_kernel
def test_prefill_on_amx_dequantizes_in_slabs(monkeypatch):
    monkeypatch.setattr(quantize.device, "cpu_bf16_matmul", lambda: True)
    monkeypatch.setattr(quantize.device, "cpu_amx", lambda: True)
    layer = Int4Linear(torch.randn(96, 64, generator=torch.Generator().manual_seed(3)))
    x = torch.randn(20, 64, generator=torch.Generator().manual_seed(4)).bfloat16()
    slabs = []
    spy = Int4Linear._slab_matmul
    monkeypatch.setattr(Int4Linear, "_slab_matmul", lambda *a: slabs.append(a[2:4]) or spy(*a))
    whole = layer(x)
    assert slabs == [(0, 96)]
    padded_k = layer.weight.shape[1] * 2 * layer.group  # (K padded to two groups)
    monkeypatch.setattr(quantize, "SCRATCH_BYTES", 32 * padded_k * 2)  # 32 rows a slab: 3
    assert torch.equal(layer(x), whole)
    assert slabs[1:] == [(0, 32), (32, 64), (64, 96)]


def test_groups_must_hold_whole_kernel_steps():
    with pytest.raises(ValueError, match="multiple of 16"):
        Int4Linear(torch.randn(16, 64), group=24)


def _models(tmp_path):
    config = {**TINY_CONFIG, "vocab_size": 512}
    path = write_random_checkpoint(tmp_path, config=config, seed=1, std=0.08)
    cfg = Qwen3Config.from_dir(path)

    def load():
        return load_model(path, cfg, torch.device("cpu"), torch.bfloat16, 128)

    return cfg, load


def _run(model, cfg, ids):
    cache = KVCache(cfg, 128, torch.device("cpu"), torch.bfloat16)
    with torch.inference_mode():
        prefill = model(ids, 0, cache, last_only=False)
        steps = [model(ids[:, i : i + 1], ids.shape[1] + i, cache) for i in range(3)]
    return prefill, steps


def _decode_each(model, cfg, ids):
    """The logits of feeding `ids` one token at a time."""
    cache = KVCache(cfg, 128, torch.device("cpu"), torch.bfloat16)
    with torch.inference_mode():
        return torch.cat([model(ids[:, i : i + 1], i, cache) for i in range(ids.shape[1])], 1)


@pytest.mark.parametrize("group", [32, 64])
def test_the_int4_model_stays_close_to_the_full_precision_model(tmp_path, group):
    cfg, load = _models(tmp_path)
    full, quant = load(), quantize_int4(load(), group=group)
    linears = [m for m in quant.modules() if isinstance(m, Int4Linear)]
    assert len(linears) == 4 * cfg.num_hidden_layers + 1  # every projection and the head
    assert quant.lm_head.weight.data_ptr() != quant.embed_tokens.weight.data_ptr()
    ids = torch.randint(0, 512, (1, 24), generator=torch.Generator().manual_seed(2))
    a, _ = _run(full, cfg, ids)
    b, _ = _run(quant, cfg, ids)
    cosine = torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1)
    # Four bits leave about 9% noise per product (int8: under 1%); through two layers of a
    # 64-wide model (one or two groups per row) the logits still point the same way.
    assert cosine.min().item() > 0.85 and cosine.mean().item() > 0.93, cosine


@needs_kernel
def test_the_kernel_model_gives_the_plain_int4_models_logits(tmp_path, monkeypatch, bf16_matmul):
    cfg, load = _models(tmp_path)
    fast = quantize_int4(load())
    assert fast.lm_head.kernel is not None
    monkeypatch.setattr(int4_cpu_kernel, "load", lambda: None)
    slow = quantize_int4(load())
    ids = torch.randint(0, 512, (1, 20), generator=torch.Generator().manual_seed(3))
    (a, steps_a), (b, steps_b) = _run(fast, cfg, ids), _run(slow, cfg, ids)
    if bf16_matmul:  # prefill: the same dequantized weights
        assert _rel(a, b) < 1e-2
    else:  # prefill row by row through the kernel: each token as decode computes it
        one_by_one = _decode_each(fast, cfg, ids)
        rels = [_rel(x, y) for x, y in zip(a[0], one_by_one[0], strict=True)]
        assert max(rels) < 3e-2, rels  # attention's bf16 rounding apart, the same numbers
    for x, y in zip(steps_a, steps_b, strict=True):  # decode: int8 activations in the kernel
        assert _rel(x, y) < 5e-2


def test_quantizing_as_loaded_gives_the_same_model(tmp_path):
    cfg, load = _models(tmp_path)
    after = quantize_int4(load())
    during = load()
    hook = quantize.int4_as_loaded(during)
    for name, _ in list(during.named_parameters()):
        hook(name)
    quantize_int4(during)  # the tied head, which no single tensor completes
    for x, y in zip(after.modules(), during.modules(), strict=True):
        if isinstance(x, Int4Linear):
            assert isinstance(y, Int4Linear) and torch.equal(x.weight, y.weight)


def test_the_engine_loads_int4_and_answers(tiny_checkpoint):
    from qwen3tui.engine import ChatOptions, Summary, load_engine
    from qwen3tui.engine.options import SamplingOverrides

    engine = load_engine(
        str(tiny_checkpoint), device="cpu", dtype="bfloat16", context_length=256, quantize="int4"
    )
    assert engine.info.quantize == "int4"
    assert isinstance(engine.model.lm_head, Int4Linear)
    options = ChatOptions(
        thinking=False, max_new_tokens=8, sampling=SamplingOverrides(temperature=0.0)
    )
    events = list(engine.chat([{"role": "user", "content": "hi"}], options))
    assert isinstance(events[-1], Summary) and events[-1].token_ids


def test_an_unknown_quantization_names_both(tiny_checkpoint):
    from qwen3tui.engine import load_engine

    with pytest.raises(EngineError, match="int8.*int4"):
        load_engine(str(tiny_checkpoint), device="cpu", quantize="int3")
