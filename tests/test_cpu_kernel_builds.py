"""The C kernels in engine/csrc build with warnings as errors for every instruction set this CPU
can run (AVX-512 with and without BF16/VNNI, AVX2 with and without AVX-VNNI), each build computes
what PyTorch computes on odd shapes, and where no kernel can be built the engine keeps PyTorch's
path."""

from __future__ import annotations

import platform

import pytest
import torch

from qwen3tui.engine import bf16_cpu_kernel, int4_cpu_kernel, int8_cpu_kernel, native_build
from qwen3tui.engine.native_build import NATIVE, STRICT, NativeUnavailable

# Each variant removes features from this CPU's own set, so every one runs here; where the CPU
# lacks a feature, removing it changes nothing and the variant repeats another.
VARIANTS = {
    "native": NATIVE,
    "avx512-plain": (*NATIVE, "-mno-avx512bf16", "-mno-avx512vnni"),
    "avx2-vnni": (*NATIVE, "-mno-avx512f"),
    "avx2": (*NATIVE, "-mno-avx512f", "-mno-avxvnni"),
}

needs_x86 = pytest.mark.skipif(
    bf16_cpu_kernel.load() is None and int8_cpu_kernel.load() is None,
    reason=f"no C kernels here: {bf16_cpu_kernel.why_unavailable()}",
)


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("QWEN3TUI_HOME", str(tmp_path))
    return tmp_path


def _rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.float() - want.float()).abs().max() / want.float().abs().max()).item()


@needs_x86
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_bf16_kernel_builds_strictly_and_matches_pytorch(variant, cache_home):
    kernel = bf16_cpu_kernel.build(VARIANTS[variant], STRICT)
    if variant.startswith("avx2"):
        assert kernel.simd == "avx2"
    gen = torch.Generator().manual_seed(1)
    for n, k in ((1, 2), (7, 33), (45, 80), (300, 2048), (17, 6144)):  # row and k tails
        w = torch.randn(n, k, generator=gen).bfloat16()
        x = torch.randn(1, k, generator=gen).bfloat16()
        assert _rel_err(kernel.gemv(x, w), x.float() @ w.float().T) < 1e-2
    for n, k in ((64, 4), (192, 100), (320, 2048)):  # oneDNN's [N/64][K/2][64][2]
        w = torch.randn(n, k, generator=gen).bfloat16()
        x = torch.randn(1, k, generator=gen).bfloat16()
        packed = w.view(n // 64, 64, k // 2, 2).transpose(1, 2).contiguous()
        got = kernel.gemv_vnni64(x, packed.data_ptr(), n, k)
        assert _rel_err(got, x.float() @ w.float().T) < 1e-2


@needs_x86
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_int8_kernel_builds_strictly_and_matches_pytorch(variant, cache_home):
    kernel = int8_cpu_kernel.build(VARIANTS[variant], STRICT)
    gen = torch.Generator().manual_seed(2)
    for n, k in ((5, 4), (16, 12), (200, 256), (33, 2052)):
        q = torch.randint(-127, 128, (n, k), dtype=torch.int8, generator=gen)
        scale = torch.rand(n, generator=gen) + 0.5
        packed = kernel.pack(q)
        padded = packed.shape[0] * 16
        scale32 = torch.cat([scale, scale.new_ones(padded - n)])
        w = q.float() * scale[:, None]
        for rows in (1, 2, 5, 8):
            for dtype in (torch.float32, torch.bfloat16):
                x = torch.randn(rows, k, generator=gen).to(dtype)
                got = kernel.matmul(x, packed, scale32)[:, :n]
                assert got.dtype == dtype
                assert _rel_err(got, x.float() @ w.T) < (1e-4 if dtype == torch.float32 else 1e-2)
        out = torch.empty(k, padded)
        assert torch.equal(kernel.dequantize_t(packed, scale32, 0, padded, out)[:, :n], w.T)
        plain = torch.empty(padded, k, dtype=torch.bfloat16)  # k % 8: 4, 4, 0, 4 (tails)
        kernel.unpack_bf16(packed, 0, padded // 16, plain)
        assert torch.equal(plain[:n], q.to(torch.bfloat16)) and not plain[n:].any()
        if kernel.gemm_rows:  # VNNI builds: prefill rows with int8 activations, k % 64 tails
            x = torch.randn(kernel.gemm_rows + 3, k, generator=gen)
            want = int8_cpu_kernel.quantized_rows(x) @ w.T
            assert _rel_err(kernel.gemm(x, packed, scale32)[:, :n], want) < 1e-5
    if variant in ("avx512-plain", "avx2"):  # no dot-product instruction: no integer gemm
        assert kernel.gemm_rows == 0


@needs_x86
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_int4_kernel_builds_strictly_and_matches_pytorch(variant, cache_home):
    kernel = int4_cpu_kernel.build(VARIANTS[variant], STRICT)
    gen = torch.Generator().manual_seed(3)
    # Odd row counts, groups of 16 to 64, and an activation longer than the kernel quantizes
    # on its stack (16,384 inputs).
    shapes = ((16, 64, 32), (48, 64, 16), (200, 256, 64), (33, 2048, 32), (7, 384, 64))
    for n, kp, group in (*shapes, (40, 16512, 64)):
        codes = torch.randint(0, 16, (n, kp), dtype=torch.uint8, generator=gen)
        scales = (torch.rand(n, kp // group, generator=gen) + 0.1).bfloat16()
        mins = torch.randn(n, kp // group, generator=gen).bfloat16()
        padded = -(-n // 16) * 16
        s = scales.float().repeat_interleave(group, 1)
        for m, w in (
            (None, s * (codes.float() - 8)),
            (mins, s * codes.float() + mins.float().repeat_interleave(group, 1)),
        ):
            packed = int4_cpu_kernel.pack(codes, scales, m, group)
            unpacked = int4_cpu_kernel.unpack(packed, n, group)
            for a, b in zip(unpacked, (codes, scales, m), strict=True):
                assert (a is None and b is None) or torch.equal(a, b)
            # A shorter activation: the weights' padding inputs, a whole padding group too.
            for k in (kp, kp - 3, kp - group - 5):
                x = torch.randn(1, k, generator=gen)
                want = x @ w[:, :k].T
                for dtype in (torch.float32, torch.bfloat16):
                    got = kernel.gemv(x.to(dtype), packed, group)[:, :n]
                    assert got.dtype == dtype and _rel_err(got, want) < 2e-2
            # Prefill rows, more than one call takes: each row exactly as decode computes it.
            rows = torch.randn(int4_cpu_kernel.GEMM_ROWS + 3, kp - 3, generator=gen).bfloat16()
            one_by_one = torch.cat([kernel.gemv(row, packed, group) for row in rows.split(1)])
            assert torch.equal(kernel.gemm(rows, packed, group), one_by_one)
            # Several weights in one call (routed experts): each row as its own call gives it.
            mats = [packed, packed.flip(0), packed]
            many = kernel.gemv_many(list(rows[:3]), mats, group)
            for row, mat, got in zip(rows[:3], mats, many, strict=True):
                assert torch.equal(got, kernel.gemv(row[None], mat, group)[0])
            out = torch.empty(kp, padded)
            got = kernel.dequantize_t(packed, group, 0, padded, out)[:, :n]
            assert torch.allclose(got, w.T, rtol=1e-6, atol=1e-6)


@needs_x86
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_products_do_not_depend_on_the_thread_count(variant, cache_home):
    # The threads take chunks of rows in turn (csrc/simd.h, chunks_of); every row must be
    # computed exactly once and the same way, whichever thread takes it and however many
    # there are. The shapes give several chunks a thread, a row tail and, in oneDNN's layout,
    # an odd block count (whose last block is summed as a pair's). Prefill's integer gemms
    # too (their activation rows quantized by the threads in turn).
    gen = torch.Generator().manual_seed(5)
    bf16 = bf16_cpu_kernel.build(VARIANTS[variant], STRICT)
    int8 = int8_cpu_kernel.build(VARIANTS[variant], STRICT)
    int4 = int4_cpu_kernel.build(VARIANTS[variant], STRICT)
    w = torch.randn(2050, 1024, generator=gen).bfloat16()
    x = torch.randn(1, 1024, generator=gen).bfloat16()
    vnni = torch.randn(23 * 64, 512, generator=gen).bfloat16()
    vnni = vnni.view(23, 64, 256, 2).transpose(1, 2).contiguous()
    xv = torch.randn(1, 512, generator=gen).bfloat16()
    q = int8.pack(torch.randint(-127, 128, (1120, 2048), dtype=torch.int8, generator=gen))
    scale = torch.rand(1120, generator=gen) + 0.5
    x8 = torch.randn(3, 2048, generator=gen)
    codes = torch.randint(0, 16, (1120, 2048), dtype=torch.uint8, generator=gen)
    scales = (torch.rand(1120, 32, generator=gen) + 0.1).bfloat16()
    q4 = int4_cpu_kernel.pack(codes, scales, None, 64)
    x4 = torch.randn(1, 2048, generator=gen)

    def products() -> list[torch.Tensor]:
        return [
            bf16.gemv(x, w),
            bf16.gemv_vnni64(xv, vnni.data_ptr(), 23 * 64, 512),
            int8.matmul(x8[:1], q, scale),
            int8.matmul(x8, q, scale),
            int4.gemv(x4, q4, 64),
            int4.gemm(x8, q4, 64),
            *([int8.gemm(x8, q, scale)] if int8.gemm_rows else []),
        ]

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        want = products()
        for threads in (2, 3, 5):
            torch.set_num_threads(threads)
            for got, one in zip(products(), want, strict=True):
                assert torch.equal(got, one), threads
    finally:
        torch.set_num_threads(before)
    assert _rel_err(want[0], x.float() @ w.float().T) < 1e-2  # and the products are right


@needs_x86
def test_the_build_is_cached_per_flags(cache_home):
    int8_cpu_kernel.build()
    int8_cpu_kernel.build()  # the second load reuses the library
    int8_cpu_kernel.build(VARIANTS["avx2"])
    assert len(list((cache_home / "cache" / "kernels").glob("int8_kernel-*.so"))) == 2


def test_the_sources_ship_in_the_package():
    files = native_build.sources()
    kernels = {bf16_cpu_kernel.SOURCE, int8_cpu_kernel.SOURCE, int4_cpu_kernel.SOURCE}
    assert {"simd.h", *kernels} <= set(files)
    assert all('#include "simd.h"' in files[f] for f in files if f.endswith(".c"))


@needs_x86
def test_no_compiler_means_no_kernel_and_no_cache(cache_home, monkeypatch):
    monkeypatch.setenv("CC", str(cache_home / "no-such-compiler"))
    for module in (bf16_cpu_kernel, int8_cpu_kernel, int4_cpu_kernel):
        with pytest.raises(NativeUnavailable, match="does not run"):
            module.build()
    assert not (cache_home / "cache" / "kernels").exists()


def test_a_cpu_that_is_not_x86_gets_no_build(cache_home, monkeypatch):
    monkeypatch.setattr(platform, "machine", lambda: "arm64")
    with pytest.raises(NativeUnavailable, match="no build for .* on arm64"):
        native_build.load_library("bf16_kernel", bf16_cpu_kernel.SOURCE)


@needs_x86
def test_a_compile_error_is_one_line(cache_home, monkeypatch):
    with pytest.raises(NativeUnavailable, match="compiling failed: .*error") as err:
        native_build.load_library("bf16_kernel", bf16_cpu_kernel.SOURCE, ("-mno-such-flag",))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("quantize", [None, "int8", "int4"])
def test_without_a_compiler_the_engine_runs_pytorchs_path(
    quantize, tiny_checkpoint, cache_home, monkeypatch
):
    from qwen3tui.engine import cpu_decode_ops, load_engine
    from qwen3tui.engine.native_build import OnceKernel

    monkeypatch.setenv("CC", str(cache_home / "no-such-compiler"))
    modules = (bf16_cpu_kernel, int8_cpu_kernel, int4_cpu_kernel, cpu_decode_ops)
    for module in modules:
        monkeypatch.setattr(module.KERNEL, "_once", OnceKernel(module.build))  # tried afresh
    engine = load_engine(
        str(tiny_checkpoint), device="cpu", dtype="bfloat16", context_length=64, quantize=quantize
    )
    for module in modules:
        assert module.load() is None
    assert all(getattr(m, "kernel", None) is None for m in engine.model.modules())
    assert engine.step.decoder is None
    with torch.inference_mode():
        logits = engine.model(torch.tensor([[1, 2, 3]]), 0, engine.cache)
    assert torch.isfinite(logits.float()).all()
    assert not (cache_home / "cache" / "kernels").exists()
