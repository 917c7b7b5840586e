"""CUDA's prefill chunk with its element-wise work in Triton kernels (engine/fast_prefill.py)
against the plain `Qwen3.prefill_chunk`.

On the CPU through Triton's interpreter in float32 (skipped where Triton is not installed, as
in CI); on a CUDA GPU in bf16, as the engine runs it, and through GraphedStep's prefill
graphs (`pytest -m cuda`).
"""

from __future__ import annotations

import pytest
import torch
from kernel_models import dense_config, random_qwen3
from test_moe_kernels import TINY, moe_model  # noqa: F401  (the interpreted code's)
from triton_interpreter import run_interpreted

from qwen3tui.engine.kv_cache import KVCache
from qwen3tui.engine.model import Qwen3

# (hidden, intermediate, query heads, KV heads, head_dim)
SMALL = (256, 384, 4, 2, 64)
GPU = (2048, 6144, 16, 8, 128)  # Qwen3-1.7B's layer


def dense_model(shape, dtype: torch.dtype, device: str, layers: int = 2) -> Qwen3:
    config = {**dense_config(shape, layers), "vocab_size": 300}
    return random_qwen3(config, dtype, device, 1024)


def both_ways(model: Qwen3, cached: int, length: int, used: int):
    """(fast, plain) logits and caches of a `length`-token chunk (`used` real tokens) after
    `cached` tokens prefilled plainly."""
    from qwen3tui.engine import fast_prefill

    device = model.rope_cos.device
    config = model.config
    ids = torch.randint(0, config.vocab_size, (1, cached + length), device=device)
    out = []
    for fast in (True, False):
        cache = KVCache(config, 512, device, model.rope_cos.dtype)
        with torch.inference_mode():
            if cached:
                model(ids[:, :cached], 0, cache)
            positions = torch.arange(cached, cached + length, device=device)
            last = torch.tensor([used - 1], device=device)
            offsets = torch.tensor([0, length], dtype=torch.int32, device=device)
            run = fast_prefill.prefill_chunk if fast else Qwen3.prefill_chunk
            logits = run(model, ids[:, cached:], positions, last, cache, offsets)
        out.append((logits, cache))
    return out


def check_float32(model: Qwen3) -> None:
    # 21: the q/k kernel's blocks of 16 tokens and a partial one; after 100 cached tokens,
    # attention's key blocks below every query (unmasked); 150: three query blocks.
    for cached, length, used in (
        (0, 16, 16),
        (40, 16, 11),
        (5, 21, 21),
        (100, 21, 20),
        (0, 150, 150),
    ):
        (got, fast), (want, plain) = both_ways(model, cached, length, used)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        end = cached + used
        # The norms sum in another order than the modules, and later layers' K/V carry that
        # through the projections: a few ulps more than float32's default tolerance allows
        # (an H200 run saw one value of 16,384 off by 2e-5 relative).
        close = {"rtol": 5e-5, "atol": 5e-5}
        for i in range(model.config.num_hidden_layers):
            torch.testing.assert_close(fast.keys[i][:, :, :end], plain.keys[i][:, :, :end], **close)
            torch.testing.assert_close(
                fast.values[i][:, :, :end], plain.values[i][:, :, :end], **close
            )


# -- on the CPU, through Triton's interpreter -------------------------------------------------


def test_fast_prefill_matches_the_plain_chunk_in_the_interpreter():
    run_interpreted(__file__, "check_float32(dense_model(SMALL, torch.float32, 'cpu'))")


def test_fast_prefill_of_a_mixture_of_experts_matches_in_the_interpreter():
    run_interpreted(__file__, "check_float32(moe_model(TINY, 'cpu'))")


def test_fast_prefill_is_only_for_flash_attention_models():
    from qwen3tui.engine import fast_prefill

    model = dense_model(SMALL, torch.float32, "cpu")
    assert not fast_prefill.supported(model)  # float32 keeps the plain, exact path
    for layer in model.layers:
        layer.flash = True
    assert fast_prefill.supported(model)


# -- on a CUDA GPU ------------------------------------------------------------------------------


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.double() - want.double()).abs().max() / want.double().abs().max())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fast_prefill_matches_the_plain_chunk_on_cuda_in_float32():
    check_float32(dense_model(GPU, torch.float32, "cuda"))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("cached", [0, 100])
def test_fast_prefill_in_bf16_stays_within_bf16_rounding_of_the_plain_chunk(cached):
    """Rounded where the plain modules round: the norms' sums in another order move a value
    by a bf16 step at most, so the chunk's logits stay within bf16 rounding."""
    model = dense_model(GPU, torch.bfloat16, "cuda")
    (got, fast), (want, plain) = both_ways(model, cached, 128, 100)
    assert rel_err(got, want) < 2e-2
    end = cached + 100
    for i in range(model.config.num_hidden_layers):
        assert rel_err(fast.keys[i][:, :, :end], plain.keys[i][:, :, :end]) < 2e-2
        assert rel_err(fast.values[i][:, :, :end], plain.values[i][:, :, :end]) < 2e-2


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_graphed_steps_prefill_through_the_kernels_once_built(qwen3tui_home):
    from qwen3tui.engine.decode_step import GraphedStep

    model = dense_model(GPU, torch.bfloat16, "cuda")
    cache = KVCache(model.config, 512, torch.device("cuda"), torch.bfloat16)
    plain = KVCache(model.config, 512, torch.device("cuda"), torch.bfloat16)
    step = GraphedStep(model, cache)
    assert step.wait_compiled(300), step.compile_error
    chunk = torch.randint(0, model.config.vocab_size, (100,)).tolist()
    with torch.inference_mode():
        got = step.prefill_chunk(chunk, 0)
        want = model(torch.tensor([chunk], device="cuda"), 0, plain)[0, -1]
    assert step.prefill_ready and step.prefills[128].fast
    assert rel_err(got, want) < 2e-2
