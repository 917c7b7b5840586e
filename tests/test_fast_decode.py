"""CUDA's fast decode step (engine/fast_decode.py, Triton kernels) against PyTorch references.

These run on a CUDA GPU only (`pytest -m cuda`); elsewhere they are skipped. Shapes are those
of the Qwen3 family: hidden sizes 2,048 to 5,120 and query/KV head groups of 2 to 8.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from kernel_models import dense_config, random_qwen3, rel_err, rms_norm

from qwen3tui.engine.kv_cache import KVCache
from qwen3tui.engine.model import Qwen3

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

# (hidden, intermediate, query heads, KV heads), head_dim 128 throughout.
SHAPES = {
    "1.7B": (2048, 6144, 16, 8),
    "4B": (2560, 9728, 32, 8),
    "8B": (4096, 12288, 32, 8),
    "14B": (5120, 17408, 40, 8),
    "32B": (5120, 25600, 64, 8),
    "30B-A3B attention": (2048, 768, 32, 4),
}
HD = 128


def random_model(
    shape: tuple[int, int, int, int], dtype: torch.dtype, layers: int = 1, positions: int = 4096
) -> Qwen3:
    return random_qwen3(dense_config((*shape, HD), layers), dtype, "cuda", positions)


@pytest.mark.parametrize("name", list(SHAPES))
def test_each_projection_kernel_matches_float64(name):
    from qwen3tui.engine.fast_decode import FastDecoder

    hidden, inner, heads, _ = SHAPES[name]
    model = random_model(SHAPES[name], torch.bfloat16)
    cache = KVCache(model.config, 256, torch.device("cuda"), torch.bfloat16)
    dec = FastDecoder(model, cache)
    layer = dec.layers[0]
    x = torch.randn(hidden, device="cuda")
    with torch.inference_mode():
        # q/k/v with RMSNorm in the prologue.
        dec.x.copy_(x)
        dec.qkv.fill_(float("nan"))
        dec.project("qkv", layer.qkv, dec.x, dec.qkv, norm=layer.norm)
        assert rel_err(dec.qkv, layer.qkv.double() @ rms_norm(x, layer.norm)) < 1e-5
        # o projection added to the residual stream in place.
        attended = torch.randn(heads * HD, device="cuda")
        dec.attended.copy_(attended)
        dec.project("o", layer.o, dec.attended, dec.x, residual=True)
        assert rel_err(dec.x, x.double() + layer.o.double() @ attended.double()) < 1e-5
        # gate/up with RMSNorm before and SwiGLU after.
        dec.x.copy_(x)
        dec.act.fill_(float("nan"))
        dec.project("gate_up", layer.gate_up, dec.x, dec.act, norm=layer.post_norm)
        gate, up = (layer.gate_up.double() @ rms_norm(x, layer.post_norm)).chunk(2)
        assert rel_err(dec.act, F.silu(gate) * up) < 1e-5
        # down projection added to the residual stream.
        act = torch.randn(inner, device="cuda")
        dec.act.copy_(act)
        dec.x.copy_(x)
        dec.project("down", layer.down, dec.act, dec.x, residual=True)
        assert rel_err(dec.x, x.double() + layer.down.double() @ act.double()) < 1e-5
        # the output head after the final norm, rounded to bf16 logits.
        dec.x.copy_(x)
        dec.logits.fill_(float("nan"))
        dec.project("head", dec.head, dec.x, dec.logits, norm=dec.final_norm)
        assert rel_err(dec.logits, dec.head.double() @ rms_norm(x, dec.final_norm)) < 5e-3


def decode_both_ways(model: Qwen3, prompt: int, steps: int, windows, fast_step):
    """Logits of the plain step and of `fast_step(cache)` for `steps` tokens after `prompt`."""
    config = model.config
    ids = torch.randint(0, config.vocab_size, (1, prompt + steps), device="cuda")
    plain = KVCache(config, model.max_positions, torch.device("cuda"), model.rope_cos.dtype)
    fast = KVCache(config, model.max_positions, torch.device("cuda"), model.rope_cos.dtype)
    step = fast_step(fast)
    out = []
    with torch.inference_mode():
        model(ids[:, :prompt], 0, plain)
        model(ids[:, :prompt], 0, fast)
        fast.tokens.extend(ids[0, :prompt].tolist())
        for p in range(prompt, prompt + steps):
            window = windows(p)
            want = model.decode_step(
                ids[:, p : p + 1], torch.tensor([p], device="cuda"), plain, window
            )
            got = step(ids[:, p : p + 1], p)
            out.append((got.clone(), want[0, -1].clone()))
            fast.tokens.append(int(ids[0, p]))
    return out, plain, fast


@pytest.mark.parametrize("pdl", [True, False], ids=["pdl", "no-pdl"])
def test_fast_step_equals_the_plain_step_in_float32(pdl):
    """The whole step, two layers, across the 256-position window boundary."""
    from qwen3tui.engine.fast_decode import FastDecoder

    model = random_model((512, 1024, 8, 2), torch.float32, layers=2, positions=1024)

    def fast_step(cache):
        dec = FastDecoder(model, cache, pdl=pdl)
        return lambda token, p: dec(
            token, torch.tensor([p], device="cuda"), 256 if p < 256 else 512
        )

    pairs, plain, fast = decode_both_ways(model, 250, 12, lambda p: 512, fast_step)
    for got, want in pairs:
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    for layer in range(2):
        torch.testing.assert_close(fast.keys[layer][:, :, :262], plain.keys[layer][:, :, :262])
        torch.testing.assert_close(fast.values[layer][:, :, :262], plain.values[layer][:, :, :262])


def test_a_context_shorter_than_the_build_trial_builds_and_decodes_as_the_plain_step(
    qwen3tui_home, monkeypatch
):
    """The kernels are built on a scratch cache of up to 512 positions: a model of 200 must
    not be stepped past its RoPE tables (an illegal address poisons the whole GPU context)."""
    from qwen3tui.engine import fast_decode
    from qwen3tui.engine.decode_step import GraphedStep

    model = random_model((512, 1024, 8, 2), torch.float32, layers=2, positions=200)
    seen = []
    call = fast_decode.FastDecoder.__call__

    def spy(self, token, pos, window):
        if not torch.cuda.is_current_stream_capturing():  # the build's trial steps
            seen.append((int(pos), window))
        return call(self, token, pos, window)

    monkeypatch.setattr(fast_decode.FastDecoder, "__call__", spy)

    def fast_step(cache):
        step = GraphedStep(model, cache)
        assert step.wait_compiled(300), step.compile_error
        return lambda token, p: step(token, p)

    pairs, _, _ = decode_both_ways(model, 150, 12, lambda p: p + 1, fast_step)
    assert seen and all(pos < 200 and window <= 200 for pos, window in seen), seen
    for got, want in pairs:
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("prompt", [250, 3000], ids=["across-buckets", "long-context"])
def test_graph_replays_of_the_fast_step_equal_the_plain_step(prompt, qwen3tui_home):
    """GraphedStep: one CUDA graph per 256-position bucket, replayed for every position in
    it; its Triton kernels built in the background, then the graphs recaptured with them."""
    from qwen3tui.engine.decode_step import GraphedStep

    model = random_model((512, 1024, 8, 2), torch.float32, layers=2, positions=4096)

    def fast_step(cache):
        step = GraphedStep(model, cache)
        assert step.wait_compiled(300), step.compile_error
        return lambda token, p: step(token, p)

    pairs, _, _ = decode_both_ways(model, prompt, 12, lambda p: p + 1, fast_step)
    for got, want in pairs:
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def draw_reply(step, model: Qwen3, cache: KVCache, prompt, first, tokens: int, sampler):
    """`tokens` tokens drawn one after another by step.next_token after `prompt`."""
    with torch.inference_mode():
        cache.truncate(0)
        model(prompt, 0, cache)
        cache.tokens.extend(prompt[0].tolist())
        token, out = first, []
        for _ in range(tokens):
            token = step.next_token(token, cache.length, sampler)
            out.append(int(token))
            if step.drawn_host is not None:  # the graph wrote it for the host too
                assert int(step.drawn_host) == out[-1]
            cache.tokens.append(out[-1])
    return out


def test_the_graph_draws_the_tokens_the_sampler_draws(qwen3tui_home):
    """With the fast kernels GraphedStep.next_token draws inside the graph (graph_sampler):
    greedy, with a presence penalty or without, gives the plain step's tokens across a bucket
    boundary; a seeded top-k reply is the same reply again, each token among the plain step's
    top-k."""
    from qwen3tui.engine.decode_step import EagerStep, GraphedStep
    from qwen3tui.engine.graph_sampler import Kind
    from qwen3tui.engine.options import SamplingParams
    from qwen3tui.engine.sampler import Sampler

    model = random_model((512, 1024, 8, 2), torch.float32, layers=2, positions=1024)
    config, cuda = model.config, torch.device("cuda")
    prompt = torch.randint(0, config.vocab_size, (1, 250), device="cuda")
    first = torch.tensor(7, device="cuda")
    fast = KVCache(config, 1024, cuda, torch.float32)
    step = GraphedStep(model, fast)
    assert step.wait_compiled(300), step.compile_error
    plain = KVCache(config, 1024, cuda, torch.float32)
    vocab = config.vocab_size
    for greedy in (
        SamplingParams(temperature=0),
        SamplingParams(temperature=0, presence_penalty=1),
    ):
        plain_step = EagerStep(model, plain)
        want = draw_reply(plain_step, model, plain, prompt, first, 12, Sampler(greedy, vocab, cuda))
        got = draw_reply(step, model, fast, prompt, first, 12, Sampler(greedy, vocab, cuda))
        assert got == want, greedy
    # Every step drew in its graph, and wrote its token into pinned memory for the host.
    assert {kind for _, kind in step.graphs} == {Kind(1, False), Kind(1, True)}
    assert step.drawn_host is not None and step.drawn_host.is_pinned()

    top_k = SamplingParams(temperature=0.8, top_p=0.95, top_k=20, seed=11)
    reply = draw_reply(
        step, model, fast, prompt, first, 12, Sampler(top_k, config.vocab_size, cuda)
    )
    again = draw_reply(
        step, model, fast, prompt, first, 12, Sampler(top_k, config.vocab_size, cuda)
    )
    assert reply == again and len(set(reply)) > 1
    with torch.inference_mode():  # each drawn token is among the plain step's top 20
        plain.truncate(0)
        model(prompt, 0, plain)
        for p, token in enumerate([7, *reply[:-1]], start=250):
            logits = model.decode_step(
                torch.tensor([[token]], device="cuda"), torch.tensor([p], device="cuda"), plain, 512
            )[0, -1]
            assert reply[p - 250] in logits.topk(20).indices.tolist()


def test_a_draw_that_cannot_be_built_leaves_the_sampler_to_draw(qwen3tui_home, monkeypatch):
    from qwen3tui.engine.decode_step import GraphedStep
    from qwen3tui.engine.graph_sampler import GraphSampler
    from qwen3tui.engine.options import SamplingParams
    from qwen3tui.engine.sampler import Sampler

    model = random_model((512, 1024, 8, 2), torch.float32, layers=1, positions=1024)
    cuda = torch.device("cuda")
    cache = KVCache(model.config, 1024, cuda, torch.float32)
    step = GraphedStep(model, cache)
    assert step.wait_compiled(300), step.compile_error
    warm = GraphSampler.warm

    def broken(self, logits, k):
        if k.candidates == 4:
            raise RuntimeError("no kernel for you")
        return warm(self, logits, k)

    monkeypatch.setattr(GraphSampler, "warm", broken)
    prompt = torch.randint(0, model.config.vocab_size, (1, 20), device="cuda")
    params = SamplingParams(temperature=0.7, top_k=3, seed=5)
    reply = draw_reply(step, model, cache, prompt, torch.tensor(7, device="cuda"), 6,
                       Sampler(params, model.config.vocab_size, cuda))  # fmt: skip
    assert len(reply) == 6 and step.picker is None
    assert step.compile_error == "draw: RuntimeError: no kernel for you"
