"""Our Qwen3 computes what the reference (transformers' modeling_qwen3) computes.

Small random checkpoints in the exact hub layout; float32; the reference runs without a
cache (a full forward per step), so cache bugs on our side cannot hide behind the same bug there.
"""

from __future__ import annotations

import pytest
import torch

from qwen3tui.engine.config import Qwen3Config
from qwen3tui.engine.kv_cache import KVCache
from qwen3tui.engine.random_checkpoint import TINY_CONFIG, write_random_checkpoint
from qwen3tui.engine.weights import load_model

transformers = pytest.importorskip("transformers")

VARIANTS = {
    "tied": {},
    "untied": {"tie_word_embeddings": False},
    "yarn": {
        "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}
    },
    "wide-heads": {
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "num_hidden_layers": 3,
    },
}


def small_config(**overrides):
    # A small vocabulary keeps the reference fast; the tokenizer plays no part here.
    return {**TINY_CONFIG, "vocab_size": 512, "bos_token_id": 0, "eos_token_id": 1, **overrides}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def pair(request, tmp_path_factory):
    path = write_random_checkpoint(
        tmp_path_factory.mktemp(request.param),
        config=small_config(**VARIANTS[request.param]),
        seed=3,
        std=0.08,
    )
    config = Qwen3Config.from_dir(path)
    ours = load_model(path, config, torch.device("cpu"), torch.float32, 512)
    ref = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    if request.param == "yarn":
        # Both sides must really be scaling, or this variant would prove nothing.
        assert config.rope_scaling is not None and config.rope_scaling.factor == 4.0
        assert ref.config.rope_parameters["rope_type"] == "yarn"
    return config, ours, ref


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def ref_greedy(ref, ids: list[int], steps: int) -> list[int]:
    out = list(ids)
    with torch.no_grad():
        for _ in range(steps):
            logits = ref(torch.tensor([out])).logits[0, -1]
            out.append(int(logits.argmax()))
    return out[len(ids) :]


def our_greedy(model, cache: KVCache, ids: list[int], steps: int) -> list[int]:
    """Greedy decode with prefix reuse: only the part of `ids` not in the cache is prefilled."""
    with torch.inference_mode():
        reuse = cache.reusable_prefix(ids)
        cache.truncate(reuse)
        logits = model(torch.tensor([ids[reuse:]]), reuse, cache)[0, -1]
        cache.tokens.extend(ids[reuse:])
        out = []
        for _ in range(steps):
            token = int(logits.argmax())
            out.append(token)
            logits = model(torch.tensor([[token]]), cache.length, cache)[0, -1]
            cache.tokens.append(token)
    return out


def test_logits_of_a_multi_token_prompt_match_the_reference(pair):
    config, ours, ref = pair
    ids = torch.randint(0, config.vocab_size, (1, 37), generator=torch.Generator().manual_seed(1))
    cache = KVCache(config, 512, torch.device("cpu"), torch.float32)
    with torch.inference_mode():
        mine = ours(ids, 0, cache, last_only=False)
        theirs = ref(ids).logits
    assert mine.shape == theirs.shape
    assert rel_err(mine, theirs) < 1e-4


def test_greedy_continuation_matches_for_64_steps(pair):
    config, ours, ref = pair
    prompt = torch.randint(
        0, config.vocab_size, (20,), generator=torch.Generator().manual_seed(2)
    ).tolist()
    cache = KVCache(config, 512, torch.device("cpu"), torch.float32)
    assert our_greedy(ours, cache, prompt, 64) == ref_greedy(ref, prompt, 64)


def test_second_turn_reusing_the_cache_matches_a_fresh_computation(pair):
    config, ours, ref = pair
    gen = torch.Generator().manual_seed(4)
    first = torch.randint(0, config.vocab_size, (15,), generator=gen).tolist()
    cache = KVCache(config, 512, torch.device("cpu"), torch.float32)
    reply = our_greedy(ours, cache, first, 24)
    # The next prompt keeps the first turn and part of its reply, then adds a new message.
    second = first + reply[:10] + torch.randint(0, config.vocab_size, (9,), generator=gen).tolist()
    assert cache.reusable_prefix(second) == len(first) + 10
    assert our_greedy(ours, cache, second, 64) == ref_greedy(ref, second, 64)


@pytest.mark.parametrize("split", [17, 30])
def test_chunked_prefill_equals_one_shot_prefill(pair, split):
    """A chunk after cached tokens: short ones attend as grouped matmuls, long ones via SDPA."""
    config, ours, _ = pair
    ids = torch.randint(0, config.vocab_size, (1, 130), generator=torch.Generator().manual_seed(5))
    whole = KVCache(config, 512, torch.device("cpu"), torch.float32)
    parts = KVCache(config, 512, torch.device("cpu"), torch.float32)
    with torch.inference_mode():
        expected = ours(ids, 0, whole, last_only=False)
        head = ours(ids[:, :split], 0, parts, last_only=False)
        middle = ours(ids[:, split : split + 20], split, parts, last_only=False)
        tail = ours(ids[:, split + 20 :], split + 20, parts, last_only=False)  # > 64 queries
    assert rel_err(torch.cat([head, middle, tail], dim=1), expected) < 1e-5


def test_position_as_tensor_decode_step_over_a_padded_cache_equals_plain_decode(pair):
    """The CUDA-graph path: position on the device, attention over a longer masked window."""
    config, ours, _ = pair
    ids = torch.randint(0, config.vocab_size, (1, 30), generator=torch.Generator().manual_seed(6))
    plain = KVCache(config, 512, torch.device("cpu"), torch.float32)
    padded = KVCache(config, 512, torch.device("cpu"), torch.float32)
    with torch.inference_mode():
        ours(ids[:, :20], 0, plain)
        ours(ids[:, :20], 0, padded)
        for p in range(20, 30):
            expected = ours(ids[:, p : p + 1], p, plain)
            # Garbage beyond the filled part must not leak in: it is masked out.
            padded.keys[0][:, :, p + 1 :] = 1e3
            got = ours.decode_step(ids[:, p : p + 1], torch.tensor([p]), padded, kv_len=64)
            assert rel_err(got, expected) < 1e-5


def test_grouped_matmul_attention_equals_sdpa(pair):
    """CUDA attends with grouped matmuls, the CPU with SDPA: both must give the same logits."""
    config, ours, _ = pair
    ids = torch.randint(0, config.vocab_size, (1, 60), generator=torch.Generator().manual_seed(7))

    def run() -> torch.Tensor:
        cache = KVCache(config, 512, torch.device("cpu"), torch.float32)
        with torch.inference_mode():
            prompt = ours(ids[:, :40], 0, cache, last_only=False)
            chunk = ours(ids[:, 40:55], 40, cache, last_only=False)  # masked short chunk
            steps = [ours(ids[:, p : p + 1], p, cache) for p in range(55, 60)]  # decode
        return torch.cat([prompt, chunk, *steps], dim=1)

    sdpa = run()
    try:
        for layer in ours.layers:
            layer.matmul_attention = True
        matmul = run()
    finally:
        for layer in ours.layers:
            layer.matmul_attention = False
    assert rel_err(matmul, sdpa) < 1e-5
