"""The C RMSNorm and one-query attention of CPU decode steps (engine/cpu_decode_ops.py): the
norm is bit-identical to the reference module, the attention matches SDPA within fp32 rounding
(fp32) or one bf16 rounding of its output (bf16), the whole-layer calls (residual add + norm,
SwiGLU, norm + RoPE + cache write + attention) give the per-op path's results bit for bit,
every instruction-set build does the same, a float32 greedy decode gives the reference's
tokens, and without the kernel the model keeps PyTorch's path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_cpu_kernel_builds import VARIANTS

from qwen3tui.engine import cpu_decode_ops
from qwen3tui.engine.model import RMSNorm
from qwen3tui.engine.native_build import STRICT, NativeUnavailable, OnceKernel

needs_kernel = pytest.mark.skipif(
    cpu_decode_ops.load() is None,
    reason=f"no C kernel here: {cpu_decode_ops.why_unavailable()}",
)

NORM_SHAPES = ((1, 7), (3, 16), (16, 128), (1, 200), (1, 2048), (3, 2048), (2, 5120))
ATTENTION_SHAPES = [
    (heads, kv, length)
    for heads, kv in ((16, 8), (32, 8), (40, 8), (32, 4))
    for length in (1, 7, 300, 4097)
]


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("QWEN3TUI_HOME", str(tmp_path))
    return tmp_path


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int16 if t.dtype == torch.bfloat16 else torch.int32)


def _check_norm(kernel: cpu_decode_ops.DecodeOpsKernel) -> None:
    gen = torch.Generator().manual_seed(4)
    for dtype in (torch.bfloat16, torch.float32):
        for rows, dim in NORM_SHAPES:
            reference = RMSNorm(dim, 1e-6).to(dtype)
            with torch.no_grad():
                reference.weight.copy_(torch.randn(dim, generator=gen))
            fast = cpu_decode_ops.FastRMSNorm(reference, kernel)
            x = (torch.randn(1, rows, dim, generator=gen) * 3).to(dtype)
            with torch.inference_mode():
                assert torch.equal(_bits(fast(x)), _bits(reference(x))), (dtype, rows, dim)


def _check_attention(kernel: cpu_decode_ops.DecodeOpsKernel, shapes) -> None:
    gen = torch.Generator().manual_seed(5)
    for heads, kv, length in shapes:
        for dtype in (torch.float32, torch.bfloat16):
            # Slices of a longer cache, as the layers read them.
            keys, values = torch.randn(2, 1, kv, length + 13, 128, generator=gen).to(dtype)
            keys, values = keys[:, :, :length], values[:, :, :length]
            q = torch.randn(1, heads, 1, 128, generator=gen).to(dtype)
            got = kernel.attention(q, keys, values)
            exact = F.scaled_dot_product_attention(
                q.float(), keys.float(), values.float(), enable_gqa=True
            )
            sdpa = F.scaled_dot_product_attention(q, keys, values, enable_gqa=True)
            assert got.dtype == dtype and got.shape == sdpa.shape
            if dtype == torch.float32:
                assert torch.allclose(got, sdpa, rtol=1e-5, atol=2e-6), (heads, kv, length)
            else:
                # fp32 throughout, one rounding at the end: within half a bf16 step of each
                # exact value (2^-8 of it), as close as SDPA's own bf16 result.
                err = (got.float() - exact).abs()
                assert (err <= exact.abs() * 2**-8 + 1e-5).all(), (heads, kv, length)
                assert err.max() <= (sdpa.float() - exact).abs().max() + 1e-5


@needs_kernel
def test_rmsnorm_is_bit_identical_to_the_reference_module():
    _check_norm(cpu_decode_ops.load())


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_norm_and_rope_of_a_step_are_bit_identical_to_the_reference(dtype):
    _check_norm_rope(cpu_decode_ops.load(), dtype)


def _check_norm_rope(kernel: cpu_decode_ops.DecodeOpsKernel, dtype: torch.dtype) -> None:
    from qwen3tui.engine.config import Qwen3Config
    from qwen3tui.engine.model import AttentionInputs
    from qwen3tui.engine.random_checkpoint import TINY_CONFIG
    from qwen3tui.engine.rope import rope_tables

    config = Qwen3Config.from_dict(
        {**TINY_CONFIG, "head_dim": 128, "num_attention_heads": 16, "num_key_value_heads": 8}
    )
    torch.manual_seed(6)
    reference = AttentionInputs(config).to(dtype)
    with torch.no_grad():
        for p in reference.parameters():
            p.copy_(torch.randn_like(p))
    fast = AttentionInputs(config).to(dtype)
    fast.load_state_dict(reference.state_dict())
    fast.__class__ = cpu_decode_ops.FastAttentionInputs
    fast.kernel = kernel
    cos, sin = (t.to(dtype) for t in rope_tables(config, 5000))
    with torch.inference_mode():
        for pos in (0, 1, 37, 4999):
            x = torch.randn(1, 1, config.hidden_size).to(dtype)
            got = fast(x, cos[pos : pos + 1], sin[pos : pos + 1])
            want = reference(x, cos[pos : pos + 1], sin[pos : pos + 1])
            for a, b in zip(got, want, strict=True):
                assert a.shape == b.shape and torch.equal(_bits(a), _bits(b)), pos
        x = torch.randn(1, 3, config.hidden_size).to(dtype)  # a prefill chunk: the reference
        for a, b in zip(fast(x, cos[:3], sin[:3]), reference(x, cos[:3], sin[:3]), strict=True):
            assert torch.equal(a, b)


def _check_add_norm_and_swiglu(kernel: cpu_decode_ops.DecodeOpsKernel) -> None:
    gen = torch.Generator().manual_seed(7)
    for dtype in (torch.bfloat16, torch.float32):
        for rows, dim in NORM_SHAPES:
            x, o = (torch.randn(2, 1, rows, dim, generator=gen) * 3).to(dtype)
            w = torch.randn(dim, generator=gen).to(dtype)
            total, normed = kernel.add_rmsnorm(x, o, w, 1e-6)
            want = x + o
            assert torch.equal(_bits(total), _bits(want)), (dtype, rows, dim)
            want_normed = w * F.rms_norm(want.float(), (dim,), eps=1e-6).to(dtype)
            assert torch.equal(_bits(normed), _bits(want_normed)), (dtype, rows, dim)
    special = torch.tensor([0.0, -0.0, 1e-40, -1e-40, 88.0, -88.0, 1e30, -1e30, float("inf")])
    for rows, inner in ((1, 64), (2, 192), (1, 6144), (3, 1000)):
        gate_up = (torch.randn(1, rows, 2 * inner, generator=gen) * 4).bfloat16()
        gate_up[..., : special.numel()] = special.bfloat16()
        gate, up = gate_up.chunk(2, dim=-1)
        assert torch.equal(_bits(kernel.swiglu(gate_up)), _bits(F.silu(gate) * up)), inner


@needs_kernel
def test_residual_add_norm_and_swiglu_are_bit_identical_to_pytorch():
    _check_add_norm_and_swiglu(cpu_decode_ops.load())


@needs_kernel
def test_swiglu_table_is_pytorchs_silu_of_every_bf16_value():
    table = cpu_decode_ops.load().silu_table
    assert table is not None and table.dtype == torch.float32 and table.numel() == 1 << 16
    finite = torch.arange(0, 1 << 15, dtype=torch.int32)
    finite = finite[(finite & 0x7F80) != 0x7F80]  # not inf or NaN; both signs below
    for bits in (finite, finite | 0x8000):
        values = torch.where(bits >= 1 << 15, bits - (1 << 16), bits).to(torch.int16)
        rows = values[: values.numel() // 64 * 64].view(torch.bfloat16).view(-1, 64)
        want = torch.cat([F.silu(row) for row in rows]).float()  # rows a decode step's length
        assert torch.equal(table[bits[: want.numel()]], want)


def _tiny_layer_config(intermediate: int):
    from qwen3tui.engine.config import Qwen3Config
    from qwen3tui.engine.random_checkpoint import TINY_CONFIG

    return Qwen3Config.from_dict(
        {
            **TINY_CONFIG,
            "head_dim": 32,
            "num_attention_heads": 8,
            "num_key_value_heads": 2,
            "hidden_size": 96,
            "intermediate_size": intermediate,
        }
    )


def _check_whole_layer(kernel: cpu_decode_ops.DecodeOpsKernel, dtype: torch.dtype) -> None:
    """FastDecoderLayer (+ FastLayerOutput) against the per-op path (FastAttentionInputs, the
    store, OneQueryAttention, LayerOutput): outputs and cache bit for bit over steps."""
    from qwen3tui.engine.kv_cache import KVCache
    from qwen3tui.engine.model import DecoderLayer
    from qwen3tui.engine.rope import rope_tables

    for intermediate in (192, 100):  # C SwiGLU, and PyTorch's for a size it leaves alone
        config = _tiny_layer_config(intermediate)
        torch.manual_seed(8)
        per_op = DecoderLayer(config, 0).to(dtype)
        with torch.no_grad():
            for p in per_op.parameters():
                p.copy_(torch.randn_like(p) * 0.3)
        fused = DecoderLayer(config, 0).to(dtype)
        fused.load_state_dict(per_op.state_dict())
        for layer, cls in ((per_op, DecoderLayer), (fused, cpu_decode_ops.FastDecoderLayer)):
            layer.inputs.__class__ = cpu_decode_ops.FastAttentionInputs
            layer.inputs.kernel = kernel
            layer.one_query_attention = cpu_decode_ops.OneQueryAttention(kernel)
            layer.__class__ = cls
        fused.output.__class__ = cpu_decode_ops.FastLayerOutput
        fused.output.kernel = kernel
        caches = [KVCache(config, 80, torch.device("cpu"), dtype) for _ in range(2)]
        cos, sin = (t.to(dtype) for t in rope_tables(config, 80))
        with torch.inference_mode():
            for pos in range(70):
                x = torch.randn(1, 1, config.hidden_size).to(dtype)
                args = (cos[pos : pos + 1], sin[pos : pos + 1])
                want = per_op(x, *args, caches[0], pos, pos + 1, None)
                got = fused(x, *args, caches[1], pos, pos + 1, None)
                assert torch.equal(_bits(got), _bits(want)), (intermediate, pos)
            assert list(fused._step_layouts.values()) == [True]  # it took the C call
            assert torch.equal(caches[0].keys[0], caches[1].keys[0])
            assert torch.equal(caches[0].values[0], caches[1].values[0])


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_whole_layer_step_gives_the_per_op_results_bit_for_bit(dtype):
    _check_whole_layer(cpu_decode_ops.load(), dtype)


@needs_kernel
def test_whole_layer_calls_leave_chunks_and_graph_steps_to_the_reference(monkeypatch):
    from qwen3tui.engine.kv_cache import KVCache
    from qwen3tui.engine.model import DecoderLayer
    from qwen3tui.engine.rope import rope_tables

    kernel = cpu_decode_ops.load()
    config = _tiny_layer_config(192)
    torch.manual_seed(9)
    reference = DecoderLayer(config, 0)
    fused = DecoderLayer(config, 0)
    fused.load_state_dict(reference.state_dict())
    fused.inputs.__class__ = cpu_decode_ops.FastAttentionInputs
    fused.inputs.kernel = kernel
    fused.one_query_attention = cpu_decode_ops.OneQueryAttention(kernel)
    fused.__class__ = cpu_decode_ops.FastDecoderLayer
    fused.output.__class__ = cpu_decode_ops.FastLayerOutput
    fused.output.kernel = kernel
    originals = {name: getattr(kernel, name) for name in ("add_rmsnorm", "swiglu")}
    for name in ("attend_step", *originals):
        monkeypatch.setattr(kernel, name, lambda *a, name=name: pytest.fail(f"{name} took it"))
    caches = [KVCache(config, 16, torch.device("cpu"), torch.float32) for _ in range(2)]
    cos, sin = rope_tables(config, 16)
    x = torch.randn(1, 3, config.hidden_size)
    mask = torch.ones(3, 3, dtype=torch.bool).tril()
    with torch.inference_mode():
        want = reference(x, cos[:3], sin[:3], caches[0], 0, 3, None)  # a prefill chunk
        assert torch.equal(fused(x, cos[:3], sin[:3], caches[1], 0, 3, None), want)
        want = reference(x, cos[:3], sin[:3], caches[0], 0, 3, mask)
        assert torch.equal(fused(x, cos[:3], sin[:3], caches[1], 0, 3, mask), want)
        # A graph-style step: the position a device tensor, keys past it masked. Its layer
        # output (one position) may take the C add + norm and SwiGLU; attend_step must not.
        for name, original in originals.items():
            monkeypatch.setattr(kernel, name, original)
        pos, x1 = torch.tensor([3]), x[:, :1]
        step_mask = (torch.arange(8) <= 3).view(1, 8)
        want = reference(x1, cos[3:4], sin[3:4], caches[0], pos, 8, step_mask)
        got = fused(x1, cos[3:4], sin[3:4], caches[1], pos, 8, step_mask)
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)


@needs_kernel
def test_rmsnorm_leaves_long_or_strided_inputs_to_pytorch(monkeypatch):
    kernel = cpu_decode_ops.load()
    reference = RMSNorm(128, 1e-6)
    fast = cpu_decode_ops.FastRMSNorm(reference, kernel)
    monkeypatch.setattr(kernel, "rmsnorm", lambda *a: pytest.fail("the kernel took it"))
    long = torch.randn(1, cpu_decode_ops.NORM_MAX_VALUES // 128 + 1, 128)
    strided = torch.randn(1, 4, 256)[..., ::2]
    with torch.inference_mode():
        for x in (long, strided, long.double()):
            assert torch.equal(fast(x), reference(x))


@needs_kernel
def test_one_query_attention_matches_sdpa_on_odd_shapes():
    _check_attention(cpu_decode_ops.load(), ATTENTION_SHAPES)


@needs_kernel
def test_attention_declines_what_it_was_not_built_for():
    attention = cpu_decode_ops.OneQueryAttention(cpu_decode_ops.load())
    keys = torch.randn(1, 2, 9, 24)  # head_dim not a multiple of 16
    assert attention(torch.randn(1, 4, 1, 24), keys, keys) is None
    keys = torch.randn(1, 1, 9, 64)  # 32 query heads to one kv head
    assert attention(torch.randn(1, 32, 1, 64), keys, keys) is None
    keys = torch.randn(1, 2, 64, 9).transpose(2, 3)  # rows not contiguous
    assert attention(torch.randn(1, 4, 1, 64), keys, keys) is None


@needs_kernel
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_build_is_strict_and_matches(variant, cache_home):
    kernel = cpu_decode_ops.build(VARIANTS[variant], STRICT)
    if variant.startswith("avx2"):
        assert kernel.simd == "avx2"
    assert kernel.lanes is not None
    _check_norm(kernel)
    for dtype in (torch.bfloat16, torch.float32):
        _check_norm_rope(kernel, dtype)
    _check_attention(kernel, [(16, 8, 7), (40, 8, 300), (32, 4, 4097)])
    _check_add_norm_and_swiglu(kernel)
    for dtype in (torch.bfloat16, torch.float32):
        _check_whole_layer(kernel, dtype)


STD, SEED = 0.3, 1


def _greedy(engine, prompt: list[int], steps: int) -> tuple[list[int], list[torch.Tensor]]:
    from qwen3tui.engine.kv_cache import KVCache

    model = engine.model
    cache = KVCache(model.config, 256, torch.device("cpu"), torch.float32)
    with torch.inference_mode():
        logits = model(torch.tensor([prompt]), 0, cache)[0, -1]
        tokens, all_logits = [], []
        for pos in range(len(prompt), len(prompt) + steps):
            token = int(logits.argmax())
            tokens.append(token)
            all_logits.append(logits)
            logits = model(torch.tensor([[token]]), pos, cache)[0, -1]
    return tokens, all_logits


@needs_kernel
def test_float32_greedy_decode_gives_the_reference_tokens(tmp_path, shared_dir, monkeypatch):
    from qwen3tui.engine import load_engine
    from qwen3tui.engine.random_checkpoint import write_random_checkpoint

    # Larger weights than the tiny default, whose greedy reply is one token repeated.
    path = write_random_checkpoint(tmp_path, tokenizer_dir=shared_dir, std=STD, seed=SEED)
    engine = load_engine(str(path), device="cpu", dtype="float32", context_length=256)
    model = engine.model
    norms = [m for m in model.modules() if isinstance(m, cpu_decode_ops.FastRMSNorm)]
    assert len(norms) == 4 * len(model.layers) + 1
    assert all(
        isinstance(layer.inputs, cpu_decode_ops.FastAttentionInputs) for layer in model.layers
    )
    assert all(isinstance(layer, cpu_decode_ops.FastDecoderLayer) for layer in model.layers)
    assert all(isinstance(layer.output, cpu_decode_ops.FastLayerOutput) for layer in model.layers)
    calls = []
    kernel = model.layers[0].inputs.kernel
    step = kernel.attend_step

    def counted(*args):
        calls.append(args[-1])
        return step(*args)

    monkeypatch.setattr(kernel, "attend_step", counted)
    prompt = [1, 2, 3, 4, 5, 6, 7, 8]
    fast_tokens, fast_logits = _greedy(engine, prompt, 120)
    assert len(calls) == 120 * len(model.layers)  # every layer of every step: the C call
    for layer in model.layers:  # back to the reference modules' own code
        layer.one_query_attention = None
        layer.inputs.kernel = None
        layer.output.kernel = None
    for norm in norms:
        norm.kernel = None
    tokens, logits = _greedy(engine, prompt, 120)
    assert fast_tokens == tokens
    assert len(set(tokens)) > 20, len(set(tokens))  # a real sequence, not one token repeated
    for a, b in zip(fast_logits, logits, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)


def test_without_the_kernel_the_model_keeps_its_modules(tiny_checkpoint, monkeypatch):
    from qwen3tui.engine import load_engine

    def fail():
        raise NativeUnavailable("no compiler")

    monkeypatch.setattr(cpu_decode_ops.KERNEL, "_once", OnceKernel(fail))
    engine = load_engine(str(tiny_checkpoint), device="cpu", dtype="float32", context_length=64)
    fast = (
        cpu_decode_ops.FastRMSNorm,
        cpu_decode_ops.FastAttentionInputs,
        cpu_decode_ops.FastLayerOutput,
        cpu_decode_ops.FastDecoderLayer,
    )
    assert not any(isinstance(m, fast) for m in engine.model.modules())
    assert all(layer.one_query_attention is None for layer in engine.model.layers)
    assert cpu_decode_ops.why_unavailable() == "NativeUnavailable: no compiler"
