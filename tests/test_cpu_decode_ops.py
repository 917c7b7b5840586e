"""The C ops of CPU decode steps (engine/cpu_decode_ops.py): the norms, the residual add and
SwiGLU are bit-identical to the reference's tensor ops; a layer's attention step writes the
reference's normed, rotated k and its v into the cache bit for bit and attends as the one-query
kernel does; that kernel matches SDPA within fp32 rounding (fp32) or one bf16 rounding of its
output (bf16); and every instruction-set build does the same. (How the decoder strings them
together is tests/test_cpu_decode.py.)"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_cpu_kernel_builds import VARIANTS

from qwen3tui.engine import cpu_decode_ops
from qwen3tui.engine.model import RMSNorm
from qwen3tui.engine.native_build import STRICT

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
            x = (torch.randn(1, rows, dim, generator=gen) * 3).to(dtype)
            with torch.inference_mode():
                got = kernel.rmsnorm(x, reference.weight, reference.eps)
                assert torch.equal(_bits(got), _bits(reference(x))), (dtype, rows, dim)


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
def test_attend_step_caches_the_reference_k_and_v_and_attends_over_them(dtype):
    _check_attend_step(cpu_decode_ops.load(), dtype)


def _check_attend_step(kernel: cpu_decode_ops.DecodeOpsKernel, dtype: torch.dtype) -> None:
    """attend_step from a q/k/v projection against the reference AttentionInputs (q/k norms,
    RoPE) and cache write: the cache bit for bit, the output as the attention kernel's over
    that cache, at positions from the first to the last of a 5,000-token cache."""
    from qwen3tui.engine.config import Qwen3Config
    from qwen3tui.engine.kv_cache import KVCache
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
    caches = [KVCache(config, 5000, torch.device("cpu"), dtype) for _ in range(2)]
    first, second = (cache.keys + cache.values for cache in caches)
    for a, b in zip(first, second, strict=True):
        b.copy_(a.copy_(torch.randn_like(a)))  # earlier positions to attend over
    cos, sin = (t.to(dtype) for t in rope_tables(config, 5000))
    q_norm, k_norm = reference.q_norm.weight, reference.k_norm.weight
    with torch.inference_mode():
        for pos in (0, 1, 37, 4999):
            x = torch.randn(1, 1, config.hidden_size).to(dtype)
            q, k, v = reference(x, cos[pos : pos + 1], sin[pos : pos + 1])
            keys, values = caches[0].store(0, pos, k, v, pos + 1)
            want = kernel.attention(q, keys, values).reshape(-1)
            qkv = reference.qkv_proj(reference.norm(x)).reshape(-1)
            got = kernel.attend_step(
                qkv, q_norm, k_norm, reference.q_norm.eps, cos[pos], sin[pos],
                caches[1].keys[0], caches[1].values[0], pos,
            )  # fmt: skip
            assert torch.equal(caches[1].keys[0], caches[0].keys[0]), pos
            assert torch.equal(caches[1].values[0], caches[0].values[0]), pos
            assert torch.equal(_bits(got), _bits(want)), pos


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
    # A routed expert's weighted add (moe.routed_on_host's: zeros, then out += y * w per
    # expert), from +0 whatever the buffer held, with -0 and signed products in it.
    for dtype in (torch.bfloat16, torch.float32):
        ys = (torch.randn(3, 1000, generator=gen) * 3).to(dtype)
        ys[0, :4] = torch.tensor([-0.0, 0.0, -1.0, 1e-30])
        ws = torch.tensor([0.75, -0.3, 0.125]).to(dtype)
        want, got = torch.zeros(1000, dtype=dtype), torch.full((1000,), 7.0, dtype=dtype)
        for i, (y, w) in enumerate(zip(ys, ws, strict=True)):
            want += y * w
            kernel.scale_add(y, got, w.item(), first=i == 0)
            assert torch.equal(_bits(got), _bits(want)), (dtype, i)


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


@needs_kernel
def test_one_query_attention_matches_sdpa_on_odd_shapes():
    _check_attention(cpu_decode_ops.load(), ATTENTION_SHAPES)


@needs_kernel
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_build_is_strict_and_matches(variant, cache_home):
    kernel = cpu_decode_ops.build(VARIANTS[variant], STRICT)
    if variant.startswith("avx2"):
        assert kernel.simd == "avx2"
    assert kernel.lanes is not None
    _check_norm(kernel)
    for dtype in (torch.bfloat16, torch.float32):
        _check_attend_step(kernel, dtype)
    _check_attention(kernel, [(16, 8, 7), (40, 8, 300), (32, 4, 4097)])
    _check_add_norm_and_swiglu(kernel)
