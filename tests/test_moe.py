"""Qwen3-MoE (`qwen3_moe`) runs in our engine exactly as transformers' Qwen3MoeForCausalLM does.

Small random checkpoints in the exact hub layout (one tensor per expert and projection, as Qwen
publishes them); float32; the reference runs without a cache.
"""

from __future__ import annotations

import pytest
import torch
from test_model_parity import our_greedy, ref_greedy, rel_err
from torch.utils._python_dispatch import TorchDispatchMode

from qwen3tui.engine import moe
from qwen3tui.engine.config import Qwen3Config
from qwen3tui.engine.kv_cache import KVCache
from qwen3tui.engine.model import LayerOutput, MoeLayerOutput
from qwen3tui.engine.quantize import Int8Linear, quantize_int8
from qwen3tui.engine.random_checkpoint import TINY_MOE_CONFIG, write_random_checkpoint
from qwen3tui.engine.weights import load_model

transformers = pytest.importorskip("transformers")

VARIANTS = {
    # Every layer sparse, top-k weights renormalised, untied head (Qwen3-30B-A3B's design).
    "renormalised": {},
    # Raw softmax weights; experts every second layer, layer 2 dense anyway; tied embeddings.
    "sparse-step": {
        "norm_topk_prob": False,
        "num_hidden_layers": 4,
        "decoder_sparse_step": 2,
        "mlp_only_layers": [3],
        "tie_word_embeddings": True,
        "num_experts": 6,
        "num_experts_per_tok": 3,
    },
}


def moe_config(**overrides):
    return {**TINY_MOE_CONFIG, "vocab_size": 512, "bos_token_id": 0, "eos_token_id": 1, **overrides}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def pair(request, tmp_path_factory):
    path = write_random_checkpoint(
        tmp_path_factory.mktemp(request.param),
        config=moe_config(**VARIANTS[request.param]),
        seed=3,
        std=0.08,
    )
    config = Qwen3Config.from_dir(path)
    ours = load_model(path, config, torch.device("cpu"), torch.float32, 512)
    ref = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    assert type(ref).__name__ == "Qwen3MoeForCausalLM"
    return config, ours, ref


def test_layers_follow_decoder_sparse_step_and_mlp_only_layers(pair):
    config, ours, ref = pair
    kinds = [type(layer.output) for layer in ours.layers]
    ref_kinds = [type(layer.mlp).__name__ for layer in ref.model.layers]
    assert [k is MoeLayerOutput for k in kinds] == [k.endswith("SparseMoeBlock") for k in ref_kinds]
    if config.decoder_sparse_step == 2:
        assert kinds == [LayerOutput, MoeLayerOutput, LayerOutput, LayerOutput]


def test_logits_of_a_multi_token_prompt_match_the_reference(pair):
    config, ours, ref = pair
    ids = torch.randint(0, config.vocab_size, (1, 37), generator=torch.Generator().manual_seed(1))
    cache = KVCache(config, 512, torch.device("cpu"), torch.float32)
    with torch.inference_mode():
        mine = ours(ids, 0, cache, last_only=False)
        theirs = ref(ids).logits
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
    second = first + reply[:10] + torch.randint(0, config.vocab_size, (9,), generator=gen).tolist()
    assert cache.reusable_prefix(second) == len(first) + 10
    assert our_greedy(ours, cache, second, 64) == ref_greedy(ref, second, 64)


def test_routing_kept_on_the_device_decodes_the_same_greedy_tokens(pair):
    """CUDA's decode path (experts picked by device index, no host read), run on the CPU,
    against the host grouping that the tests above hold to the reference."""
    config, ours, _ = pair
    blocks = list(moe.moe_blocks(ours))
    prompt = torch.randint(
        0, config.vocab_size, (20,), generator=torch.Generator().manual_seed(6)
    ).tolist()

    def greedy(on_device: bool | None) -> list[int]:
        for block in blocks:
            block.device_routing = on_device
        cache = KVCache(config, 512, torch.device("cpu"), torch.float32)
        return our_greedy(ours, cache, prompt, 64)

    try:
        assert greedy(True) == greedy(None)
    finally:
        for block in blocks:
            block.device_routing = None


class NoHostReads(TorchDispatchMode):
    """Fails on any op that reads a tensor's value back to the host (on CUDA: a sync, which
    a CUDA graph cannot hold): .item(), .tolist(), bool(), nonzero, bincount."""

    READS = ("aten::_local_scalar_dense", "aten::nonzero", "aten::bincount", "aten::unique")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        assert func.name().split(".")[0] not in self.READS, f"host read: {func.name()}"
        return func(*args, **(kwargs or {}))

    def __enter__(self):
        # tolist() copies without dispatching an op: caught here instead.
        self.tolist = torch.Tensor.tolist
        torch.Tensor.tolist = lambda t: pytest.fail("host read: tolist")
        return super().__enter__()

    def __exit__(self, *exc):
        torch.Tensor.tolist = self.tolist
        return super().__exit__(*exc)


def test_a_decode_step_with_device_routing_never_reads_the_routing_back(pair):
    """The whole graphed decode step (position on the device, masked window), as CUDA graphs
    replay it, has no host read anywhere, the experts' routing included."""
    config, ours, _ = pair
    prompt, token = torch.tensor([[5, 6, 7]]), torch.tensor([[8]])
    plain = KVCache(config, 512, torch.device("cpu"), torch.float32)
    graphed = KVCache(config, 512, torch.device("cpu"), torch.float32)
    blocks = list(moe.moe_blocks(ours))
    with torch.inference_mode():
        ours(prompt, 0, plain)
        ours(prompt, 0, graphed)
        expected = ours(token, 3, plain)
        for block in blocks:
            block.device_routing = True
        try:
            with NoHostReads():
                got = ours.decode_step(token, torch.tensor([3]), graphed, 64)
        finally:
            for block in blocks:
                block.device_routing = None
    assert rel_err(got, expected) < 1e-5


# -- the ways of running routed experts ---------------------------------------------------


@pytest.fixture
def block():
    config = Qwen3Config.from_dict(moe_config(num_experts=8, num_experts_per_tok=2))
    torch.manual_seed(0)
    b = moe.SparseMoeBlock(config)
    for p in b.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return b


def poison_unrouted(block: moe.SparseMoeBlock, ids: torch.Tensor) -> None:
    """NaN in every expert no token routes to: any path that reads one yields NaN."""
    for e in set(range(block.experts.num_experts)) - set(ids.flatten().tolist()):
        block.experts.gate_up_proj.data[e] = float("nan")
        block.experts.down_proj.data[e] = float("nan")


def test_host_grouping_reads_only_the_routed_experts(block):
    x = torch.randn(3, 64)
    with torch.inference_mode():
        weights, ids = block.router(x)
        expected = moe.routed_on_host(block.experts, x, weights, ids)
        poison_unrouted(block, ids)
        assert torch.equal(moe.routed_on_host(block.experts, x, weights, ids), expected)


def test_device_index_decode_reads_only_the_routed_experts_and_matches_host_grouping(block):
    """The CUDA decode path (no host read of the routing), checked on the CPU."""
    x = torch.randn(1, 64)
    with torch.inference_mode():
        weights, ids = block.router(x)
        expected = moe.routed_on_host(block.experts, x, weights, ids)
        poison_unrouted(block, ids)
        with NoHostReads():
            got = moe.routed_by_index(block.experts, x, weights[0], ids[0])
    assert rel_err(got, expected) < 1e-5


def test_grouped_matmul_prefill_reads_only_the_routed_experts_and_matches_host_grouping(block):
    """The CUDA prefill path (groups ending at device offsets), through PyTorch's CPU fallback."""
    x = torch.randn(9, 64)
    with torch.inference_mode():
        weights, ids = block.router(x)
        expected = moe.routed_on_host(block.experts, x, weights, ids)
        poison_unrouted(block, ids)
        with NoHostReads():  # CUDA prefill graphs run it
            got = moe.routed_grouped(block.experts, x, weights, ids)
    assert rel_err(got, expected) < 1e-5


def test_dense_fallback_for_graph_capture_matches_host_grouping(block):
    x = torch.randn(9, 64)
    with torch.inference_mode():
        weights, ids = block.router(x)
        expected = moe.routed_on_host(block.experts, x, weights, ids)
        with NoHostReads():
            got = moe.routed_densely(block.experts, x, weights, ids)
    assert rel_err(got, expected) < 1e-5


def test_experts_are_quantized_like_dense_projections_and_stay_close(tmp_path):
    path = write_random_checkpoint(tmp_path, config=moe_config(), seed=1, std=0.08)
    config = Qwen3Config.from_dir(path)

    def load():
        return load_model(path, config, torch.device("cpu"), torch.bfloat16, 128)

    full, quant = load(), quantize_int8(load())
    for block in moe.moe_blocks(quant):
        assert isinstance(block.experts, moe.ExpertList)
        assert all(isinstance(m, Int8Linear) for m in [*block.experts.gate_up, *block.experts.down])
        assert block.experts.num_experts == config.num_experts
    ids = torch.randint(0, 512, (1, 24), generator=torch.Generator().manual_seed(2))
    logits = []
    for model in (full, quant):
        cache = KVCache(config, 128, torch.device("cpu"), torch.bfloat16)
        with torch.inference_mode():
            prefill = model(ids, 0, cache, last_only=False)
            step = model(ids[:, :1], 24, cache)
        logits.append(torch.cat([prefill, step], dim=1).float())
    cosine = torch.nn.functional.cosine_similarity(logits[0], logits[1], dim=-1)
    assert cosine.min().item() > 0.99


def test_a_moe_checkpoint_chats_through_the_engine_reusing_its_cache(tmp_path, shared_dir):
    from qwen3tui.engine import ChatOptions, SamplingOverrides, load_engine
    from qwen3tui.engine.events import Summary

    path = write_random_checkpoint(
        tmp_path, config={**TINY_MOE_CONFIG, "vocab_size": 151936}, tokenizer_dir=shared_dir
    )
    engine = load_engine(str(path), device="cpu", dtype="float32", context_length=256)
    assert engine.info.num_parameters == sum(p.numel() for p in engine.model.parameters())
    options = ChatOptions(
        thinking=False, max_new_tokens=6, sampling=SamplingOverrides(temperature=0.0)
    )
    first = [{"role": "user", "content": "Tell me about the sea."}]
    s1 = list(engine.chat(first, options))[-1]
    assert isinstance(s1, Summary) and s1.prefilled_tokens == s1.usage.prompt_tokens
    second = [
        *first,
        {"role": "assistant", "content": s1.answer},
        {"role": "user", "content": "Hm?"},
    ]
    s2 = list(engine.chat(second, options))[-1]
    assert 0 < s2.prefilled_tokens < s2.usage.prompt_tokens  # the first turn came from the cache
    engine.reset_cache()
    assert list(engine.chat(second, options))[-1].token_ids == s2.token_ids


def test_a_bf16_router_on_the_cpu_routes_one_row_through_the_c_kernel(tmp_path, shared_dir):
    from qwen3tui.engine import bf16_cpu_kernel, load_engine

    kernel = bf16_cpu_kernel.load()
    if kernel is None:
        pytest.skip(f"no C kernel here: {bf16_cpu_kernel.why_unavailable()}")
    config = {**TINY_MOE_CONFIG, "num_experts_per_tok": 4}
    path = write_random_checkpoint(tmp_path, config=config, tokenizer_dir=shared_dir, std=0.3)
    engine = load_engine(str(path), device="cpu", dtype="bfloat16", context_length=64)
    routers = [block.router for block in moe.moe_blocks(engine.model)]
    assert routers and all(r.gemv is not None for r in routers)
    router = routers[0]
    gen = torch.Generator().manual_seed(4)
    with torch.inference_mode():
        for _ in range(20):
            x = torch.randn(1, config["hidden_size"], generator=gen).bfloat16()
            weights, ids = router(x)
            probs = torch.softmax(kernel.gemv(x, router.weight), -1, dtype=torch.float32)
            want_w, want_ids = torch.topk(probs, 4)
            assert torch.equal(ids, want_ids)  # the kernel's logits chose them
            assert torch.equal(weights, (want_w / want_w.sum()).to(torch.bfloat16))
            # and they are F.linear's choice up to bf16 rounding of near-equal logits
            plain = torch.softmax(torch.nn.functional.linear(x, router.weight).float(), -1)
            assert (plain[0, ids[0]] - plain.topk(4).values[0]).abs().max() < 2e-2
        router.gemv = lambda *a: pytest.fail("a prefill's rows took the one-row kernel")
        assert router(torch.randn(3, config["hidden_size"], generator=gen).bfloat16())[1].shape == (
            3,
            4,
        )
