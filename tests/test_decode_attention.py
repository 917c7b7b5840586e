"""The decode step's attention kernel (`triton_kernels.attention`, launched by
`FastDecoder.attend`) against float64: q/k norms, RoPE, the cache write at `pos`, attention
over positions 0..pos, and the merge of the cache's splits.

The cache is filled with noise first, the row at `pos` included: the kernel must attend to
the new key and value it computes, never to what a stale reply left there. On the CPU the
kernel runs in float32 through Triton's interpreter on small splits (several tiles a split,
splits past the position, one split without a merge); on a GPU (`pytest -m cuda`) in bf16 at
the family's shapes.
"""

from __future__ import annotations

import pytest
import torch
from kernel_models import dense_config, random_qwen3, rel_err, rms_norm, rope
from triton_interpreter import run_interpreted

from qwen3tui.engine.fast_decode import AttentionShape, FastDecoder
from qwen3tui.engine.kv_cache import KVCache

# (hidden, intermediate, query heads, KV heads), head_dim 128 throughout.
SHAPES = {
    "small": (256, 512, 8, 2),
    "five queries a KV head": (256, 512, 10, 2),
    "1.7B": (2048, 6144, 16, 8),
    "4B": (2560, 9728, 32, 8),
    "14B": (5120, 17408, 40, 8),
    "32B": (5120, 25600, 64, 8),
    "30B-A3B attention": (2048, 768, 32, 4),
}
HD = 128


def attention_against_float64(
    name: str,
    pos: int,
    window: int,
    device: str,
    dtype: torch.dtype,
    split: tuple[int, int, int] | None = None,
    tolerance: float = 1e-2,
) -> None:
    """One attention launch at `pos` over a `window`, splits shaped (split_min, max_splits,
    block_t) when given, checked against float64."""
    _, _, heads, kv = SHAPES[name]
    model = random_qwen3(dense_config((*SHAPES[name], HD), 1), dtype, device, window)
    cache = KVCache(model.config, window, torch.device(device), dtype)
    cache.keys[0].normal_()
    cache.values[0].normal_()
    shape = AttentionShape(*split) if split else None
    dec = FastDecoder(model, cache, attention=shape)
    dec.qkv.normal_()
    dec.attended.fill_(float("nan"))
    layer = dec.layers[0]
    with torch.inference_mode():
        before = cache.keys[0].clone(), cache.values[0].clone()
        dec.attend(layer, torch.tensor([pos], device=device), window)
        if device == "cuda":
            torch.cuda.synchronize()
    cos, sin = model.rope_cos[pos], model.rope_sin[pos]
    q, k, v = dec.qkv.double().split([heads * HD, kv * HD, kv * HD])
    q = rope(rms_norm(q.view(heads, HD), layer.q_norm), cos, sin)
    k = rope(rms_norm(k.view(kv, HD), layer.k_norm), cos, sin)
    # The new key and value land at `pos` and nowhere else.
    assert rel_err(cache.keys[0][0, :, pos], k) < tolerance
    assert rel_err(cache.values[0][0, :, pos], v.view(kv, HD)) < tolerance
    for new, old in zip((cache.keys[0], cache.values[0]), before, strict=True):
        assert torch.equal(new[0, :, :pos], old[0, :, :pos])
        assert torch.equal(new[0, :, pos + 1 :], old[0, :, pos + 1 :])
    keys = cache.keys[0][0, :, : pos + 1].double().repeat_interleave(heads // kv, 0)
    values = cache.values[0][0, :, : pos + 1].double().repeat_interleave(heads // kv, 0)
    scores = (q[:, None, :] @ keys.transpose(1, 2))[:, 0] * HD**-0.5
    want = (scores.softmax(-1)[:, None, :] @ values)[:, 0]
    assert rel_err(dec.attended.view(heads, HD), want) < tolerance
    assert (dec.counter == 0).all(), "the split counters are left ready for the next launch"


# -- on the CPU, through Triton's interpreter -------------------------------------------------


@pytest.mark.parametrize(
    "pos, window, split",
    [
        (0, 64, (64, 1, 16)),
        (45, 64, (64, 1, 16)),
        (70, 128, (64, 2, 32)),
        (200, 256, (128, 2, 32)),
        (100, 256, (64, 4, 32)),
    ],
    ids=[
        "first-position",
        "one-split-of-four-tiles",
        "the-position-in-a-first-tile",
        "two-splits-of-four-tiles",
        "splits-past-the-position",
    ],
)
def test_attention_matches_float64_in_the_interpreter(pos, window, split):
    run_interpreted(
        __file__,
        f"attention_against_float64('small', {pos}, {window}, 'cpu', torch.float32, {split},"
        " tolerance=1e-4)",
    )


@pytest.mark.parametrize(
    "name, pos, window, merge_values",
    [("small", 150, 192, 1024), ("five queries a KV head", 230, 256, 2048)],
    ids=["three-splits-merged-two-at-a-time", "a-group-of-five-padded-to-eight"],
)
def test_the_merge_takes_the_splits_in_chunks(name, pos, window, merge_values):
    """The merge loads MERGE_VALUES partials at a time: here two splits a load (4 and 8 rows
    of 128), the last load partial; a group of five pads its rows to eight."""
    run_interpreted(
        __file__,
        "import qwen3tui.engine.fast_decode as fast_decode\n"
        f"fast_decode.MERGE_VALUES = {merge_values}\n"
        f"attention_against_float64({name!r}, {pos}, {window}, 'cpu', torch.float32,"
        " (64, 4, 32), tolerance=1e-4)",
    )


# -- on a GPU ----------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ["1.7B", "4B", "14B", "32B", "30B-A3B attention"])
@pytest.mark.parametrize(
    "pos, window",
    [(0, 64), (63, 64), (255, 256), (700, 1024), (3000, 3072), (3070, 3072), (16000, 16384)],
    ids=[
        "first-position",
        "window-64",
        "window-256",
        "window-1024",
        "window-3072",
        "window-3072-second-tile",
        "window-16k",
    ],
)
def test_attention_matches_float64_on_cuda(name, pos, window):
    attention_against_float64(name, pos, window, "cuda", torch.bfloat16)
