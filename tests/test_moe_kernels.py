"""The mixture-of-experts decode kernels (engine/triton_moe.py) inside CUDA's fast decode step.

The fast step routes each token on the device: the router's scores, then each of the k routed
experts' SwiGLU and down projections, read by device index. Held here against the plain model
(engine/moe.py), in float32: on the CPU through Triton's interpreter (skipped where Triton is
not installed, as in CI), and on a CUDA GPU at Qwen3-30B-A3B's shapes (`pytest -m cuda`).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from kernel_models import random_qwen3, step_against_plain
from triton_interpreter import run_interpreted

from qwen3tui.engine.kv_cache import KVCache
from qwen3tui.engine.model import Qwen3
from qwen3tui.engine.moe import ExpertList

# Qwen3-30B-A3B's layer shapes (128 experts, 8 routed, 768 rows each), two layers.
A3B = {
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "moe_intermediate_size": 768,
    "num_experts": 128,
    "num_experts_per_tok": 8,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
}
# Small enough for the interpreter: experts of 40 rows (partial blocks), a dense layer among
# sparse ones, raw or renormalised top-k weights.
TINY = {
    "hidden_size": 128,
    "intermediate_size": 96,
    "moe_intermediate_size": 40,
    "num_experts": 12,
    "num_experts_per_tok": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "mlp_only_layers": [1],
}


def moe_model(shape: dict, device: str, layers: int = 2, normalize: bool = True) -> Qwen3:
    config = {
        **shape,
        "num_hidden_layers": layers,
        "head_dim": shape.get("head_dim", 64 if shape is TINY else 128),
        "vocab_size": 300,
        "tie_word_embeddings": False,
        "norm_topk_prob": normalize,
        "model_type": "qwen3_moe",
    }
    return random_qwen3(config, torch.float32, device, 1024)


def experts_against_plain(model: Qwen3, trials: int, tile: int | None = None) -> None:
    """Each sparse layer's experts on random residual streams: the kernels' x += moe(norm(x))
    against the plain block's, and the k experts they chose against torch.topk's. With
    `tile`, the router reads its rows in tiles of that many inputs, two fetched before it
    waits, and the down kernel takes that many of the k experts' inputs a tile."""
    from qwen3tui.engine.fast_decode import FastDecoder

    device = model.rope_cos.device
    cache = KVCache(model.config, 64, device, torch.float32)
    shapes = None
    if tile:
        default = FastDecoder(model, cache).shapes
        shapes = {
            "router": replace(default["router"], block_cols=tile, depth=2),
            "expert_down": replace(default["expert_down"], block_cols=tile),
        }
    dec = FastDecoder(model, cache, shapes=shapes)
    k = model.config.num_experts_per_tok
    with torch.inference_mode():
        for i, (layer, fast) in enumerate(zip(model.layers, dec.layers, strict=True)):
            if fast.router is None:
                continue
            block = layer.output.moe
            for trial in range(trials):
                x = torch.randn(model.config.hidden_size, device=device) * (1 + trial)
                normed = layer.output.norm(x[None, None])
                want = x + block(normed)[0, 0]
                dec.x.copy_(x)
                dec.experts(fast)
                _, ids = block.router(normed[0])
                assert sorted(dec.expert_ids.tolist()) == sorted(ids[0].tolist()), (i, trial)
                assert dec.expert_ids.shape == (k,)
                assert dec.route_counter.item() == 0  # reset for the next layer
                torch.testing.assert_close(dec.x, want, rtol=1e-5, atol=1e-5)


def ties_go_to_the_lower_index(model: Qwen3) -> None:
    """Experts 9, 4 and 2 score the same and most (their router rows are one row; the others
    are zero, so they tie too): the router ranks 2, 4, 9, then the lowest other indices.
    Interpreter only: on a GPU equal rows in different programs may sum in different orders."""
    from qwen3tui.engine.fast_decode import FastDecoder

    config = model.config
    device = model.rope_cos.device
    dec = FastDecoder(model, KVCache(config, 64, device, torch.float32))
    layer = dec.layers[0]
    with torch.inference_mode():
        row = torch.randn(config.hidden_size, device=device)
        layer.router.zero_()
        layer.router[[9, 4, 2]] = row
        x = torch.randn(config.hidden_size, device=device)
        x = x if float(row @ x) > 0 else -x
        dec.x.copy_(x)
        dec.experts(layer)
        normed = x * torch.rsqrt(x.square().mean() + config.rms_norm_eps) * layer.post_norm
        scores = layer.router @ normed
    k = config.num_experts_per_tok
    want = [2, 4, 9] + [e for e in range(config.num_experts) if e not in (2, 4, 9)][: k - 3]
    assert dec.expert_ids.tolist() == want
    probs = scores.softmax(0)[want]
    torch.testing.assert_close(dec.expert_weights, probs / probs.sum(), rtol=1e-4, atol=1e-6)


def steps_against_plain(model: Qwen3, prompt: int, steps: int, window: int) -> None:
    """Whole fast steps (dense and sparse layers) against the plain model's, in float32."""
    for got, want in step_against_plain(model, prompt, steps, window):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


# -- anywhere -----------------------------------------------------------------------------------


def test_the_fast_step_takes_stacked_experts_and_not_experts_quantized_one_by_one():
    from qwen3tui.engine import fast_decode

    model = moe_model(TINY, "cpu")
    assert fast_decode.supported(model)
    block = model.layers[0].output.moe
    block.experts = ExpertList.from_stacks(block.experts, lambda w: torch.nn.Linear(1, 1))
    assert not fast_decode.supported(model)


# -- on the CPU, through Triton's interpreter -------------------------------------------------


@pytest.mark.parametrize("normalize", [True, False])
def test_routed_experts_match_the_plain_block_in_the_interpreter(normalize):
    run_interpreted(
        __file__, f"experts_against_plain(moe_model(TINY, 'cpu', normalize={normalize}), 4)"
    )


def test_equal_scores_route_to_the_lower_expert_index_in_the_interpreter():
    run_interpreted(__file__, "ties_go_to_the_lower_index(moe_model(TINY, 'cpu'))")


def test_down_tiles_that_cross_experts_match_the_plain_block_in_the_interpreter():
    """Experts of 48 rows, 4 routed: 192 inputs to the down kernel in tiles of 64, each
    holding the end of one expert and the start of the next, without masks (EVEN); the
    router's rows in two tiles of 64, both fetched before it waits."""
    shape = {**TINY, "moe_intermediate_size": 48, "num_experts_per_tok": 4, "head_dim": 64}
    run_interpreted(__file__, f"experts_against_plain(moe_model({shape}, 'cpu'), 3, tile=64)")


def test_fast_steps_with_experts_match_the_plain_steps_in_the_interpreter():
    run_interpreted(__file__, "steps_against_plain(moe_model(TINY, 'cpu'), 10, 3, 64)")


# -- on a CUDA GPU ------------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_routed_experts_match_the_plain_block_at_30b_a3b_shapes(normalize):
    experts_against_plain(moe_model(A3B, "cuda", layers=1, normalize=normalize), 8)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("window", [256, 1024])
def test_fast_steps_with_experts_match_the_plain_steps_at_30b_a3b_shapes(window):
    steps_against_plain(moe_model(A3B, "cuda"), window - 40, 4, window)
