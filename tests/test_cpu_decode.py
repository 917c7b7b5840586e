"""The CPU decode step (engine/cpu_decode.py): for every kind of model the CPU engine loads, a
step gives the reference modules' logits and KV cache bit for bit (their one-query attention
taken by the same C kernel, the one difference by design), over many steps; a float32 greedy
decode through the engine gives the reference's tokens with SDPA's attention; and where the
C kernels cannot be had, steps run the modules."""

from __future__ import annotations

import pytest
import torch

from qwen3tui.engine import cpu_decode, cpu_decode_ops, cpu_linear, load_engine
from qwen3tui.engine.kv_cache import KVCache
from qwen3tui.engine.model import DecoderLayer
from qwen3tui.engine.moe import SparseMoeBlock
from qwen3tui.engine.native_build import NativeUnavailable, OnceKernel
from qwen3tui.engine.quantize import Int4Linear, Int8Linear
from qwen3tui.engine.random_checkpoint import TINY_CONFIG, TINY_MOE_CONFIG, write_random_checkpoint

needs_kernel = pytest.mark.skipif(
    cpu_decode_ops.load() is None,
    reason=f"no C kernel here: {cpu_decode_ops.why_unavailable()}",
)

SHAPES = {"hidden_size": 128, "head_dim": 32, "num_attention_heads": 8, "num_key_value_heads": 2}
UNTIED = {**TINY_CONFIG, **SHAPES, "tie_word_embeddings": False}
# name: (config, dtype, quantize, what the projections must be)
MODELS = {
    "float32, nn.Linear, tied head": ({**TINY_CONFIG, **SHAPES}, "float32", None, torch.nn.Linear),
    "bfloat16, oneDNN-packed": (UNTIED, "bfloat16", None, cpu_linear.PackedLinear),
    "bfloat16, plain C kernel": (UNTIED, "bfloat16", None, cpu_linear.GemvLinear),
    "bfloat16, SwiGLU size PyTorch's": (
        {**UNTIED, "intermediate_size": 100},
        "bfloat16",
        None,
        (cpu_linear.PackedLinear, cpu_linear.GemvLinear),
    ),
    "bfloat16, int8": (UNTIED, "bfloat16", "int8", Int8Linear),
    "float32, int8": ({**TINY_CONFIG, **SHAPES}, "float32", "int8", Int8Linear),
    "bfloat16, int4, tied head": ({**TINY_CONFIG, **SHAPES}, "bfloat16", "int4", Int4Linear),
    "bfloat16, mixture of experts, int4": (
        {**TINY_MOE_CONFIG, **SHAPES, "moe_intermediate_size": 64, "num_experts_per_tok": 4},
        "bfloat16",
        "int4",
        Int4Linear,
    ),
    "float32, mixture of experts, int8": (
        {**TINY_MOE_CONFIG, **SHAPES, "num_experts_per_tok": 4},  # 3+ terms: their order shows
        "float32",
        "int8",
        Int8Linear,
    ),
}


@pytest.fixture
def c_attention(monkeypatch):
    """The reference layers' one-query attention through the C kernel, as the decoder's is;
    everything else (prefill chunks, masks) the reference's own."""
    kernel = cpu_decode_ops.load()
    reference = DecoderLayer.attend

    def attend(self, q, k, v, cache, pos, kv_len, mask):
        if q.shape[2] == 1 and mask is None:
            keys, values = cache.store(self.index, pos, k, v, kv_len)
            return kernel.attention(q, keys, values)
        return reference(self, q, k, v, cache, pos, kv_len, mask)

    monkeypatch.setattr(DecoderLayer, "attend", attend)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int16 if t.dtype == torch.bfloat16 else torch.int32)


@pytest.fixture(autouse=True)
def fixed_threads(monkeypatch):
    """One thread count for every call: the default policy changes the count with the
    machine's load, and the prompt's prefill (PyTorch's matrix products) into each of the two
    caches rounds differently at 1 and 2 threads (the decode steps do not; measured)."""
    monkeypatch.setenv("QWEN3TUI_THREADS", "2")


def _engine(tmp_path, shared_dir, config, dtype, quantize, context=96):
    path = write_random_checkpoint(
        tmp_path, config=config, tokenizer_dir=shared_dir, std=0.3, seed=3
    )
    return load_engine(
        str(path), device="cpu", dtype=dtype, context_length=context, quantize=quantize
    )


@needs_kernel
@pytest.mark.parametrize("name", list(MODELS))
def test_a_step_gives_the_reference_logits_and_cache_bit_for_bit(
    name, tmp_path, shared_dir, c_attention, monkeypatch
):
    config, dtype, quantize, projection = MODELS[name]
    if projection is cpu_linear.PackedLinear and not cpu_linear._onednn_available():
        pytest.skip("oneDNN has no bf16 on this CPU")
    if projection is cpu_linear.GemvLinear:
        monkeypatch.setattr(cpu_linear, "_onednn_available", lambda: False)
    engine = _engine(tmp_path, shared_dir, config, dtype, quantize)
    model = engine.model
    assert all(isinstance(layer.inputs.qkv_proj, projection) for layer in model.layers)
    decoder = engine.step.decoder
    assert isinstance(decoder, cpu_decode.CpuDecoder)
    blocks = []  # the mixture-of-experts blocks' own forward: the reference's, not the decoder's
    block_forward = SparseMoeBlock.forward
    monkeypatch.setattr(
        SparseMoeBlock, "forward", lambda self, x: blocks.append(self) or block_forward(self, x)
    )
    reference_cache = KVCache(
        model.config, engine.cache.max_tokens, torch.device("cpu"), model.rope_cos.dtype
    )
    prompt = torch.tensor([[5, 17, 99, 3, 250, 7]])
    tokens = torch.randint(
        0, model.config.vocab_size, (80,), generator=torch.Generator().manual_seed(1)
    )
    with torch.inference_mode():
        model(prompt, 0, reference_cache)
        model(prompt, 0, engine.cache)
        for pos, token in enumerate(tokens.tolist(), start=prompt.shape[1]):
            if pos >= engine.cache.max_tokens:
                break
            want = model(torch.tensor([[token]]), pos, reference_cache)[0, -1]
            called = len(blocks)
            got = decoder(token, pos)
            assert len(blocks) == called  # the routed experts went through their C calls
            assert got.shape == want.shape and got.dtype == want.dtype
            assert torch.equal(_bits(got), _bits(want)), (name, pos)
    moe = config.get("num_experts", 0) > 0
    # int4 experts go in one kernel call per routed projection (its per-slot buffers); int8
    # ones one call each
    slots = any(role.startswith("slots") for role, *_ in decoder.scratch)
    assert slots == (moe and quantize == "int4")
    assert bool(decoder.scratch) == moe
    for layer in range(len(model.layers)):
        assert torch.equal(engine.cache.keys[layer], reference_cache.keys[layer])
        assert torch.equal(engine.cache.values[layer], reference_cache.values[layer])


@needs_kernel
def test_a_position_outside_the_cache_is_refused_before_anything_is_written(tmp_path, shared_dir):
    engine = _engine(tmp_path, shared_dir, UNTIED, "bfloat16", "int8", context=32)
    before = [t.clone() for t in engine.cache.keys + engine.cache.values]
    with pytest.raises(ValueError, match="position 32 is outside the cache of 32"):
        engine.step.decoder(1, 32)
    with pytest.raises(ValueError, match="outside the cache"):
        engine.step.decoder(1, -1)
    after = engine.cache.keys + engine.cache.values
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


def _greedy(model, cache, prompt: list[int], steps: int, step=None):
    """Greedy tokens and the logits that chose them: each step through `step` (token, pos) ->
    logits where given, else the model's forward."""
    with torch.inference_mode():
        logits = model(torch.tensor([prompt]), 0, cache)[0, -1]
        tokens, seen = [], []
        for pos in range(len(prompt), len(prompt) + steps):
            token = int(logits.argmax())
            tokens.append(token)
            seen.append(logits.clone())
            if step is None:
                logits = model(torch.tensor([[token]]), pos, cache)[0, -1]
            else:
                logits = step(torch.tensor(token), pos)
    return tokens, seen


@needs_kernel
def test_float32_greedy_decode_gives_the_reference_tokens(tmp_path, shared_dir):
    # SDPA's attention in the reference here: the C kernel's differs at fp32 rounding only.
    engine = _engine(tmp_path, shared_dir, {**TINY_CONFIG, **SHAPES}, "float32", None, 256)
    assert engine.step.decoder is not None
    prompt = [1, 2, 3, 4, 5, 6, 7, 8]
    fast_tokens, fast_logits = _greedy(engine.model, engine.cache, prompt, 120, engine.step)
    reference_cache = KVCache(engine.model.config, 256, torch.device("cpu"), torch.float32)
    tokens, logits = _greedy(engine.model, reference_cache, prompt, 120)
    assert fast_tokens == tokens
    assert len(set(tokens)) > 20, len(set(tokens))  # a real sequence, not one token repeated
    for a, b in zip(fast_logits, logits, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)


def test_without_the_kernel_steps_run_the_modules(tiny_checkpoint, monkeypatch):
    def fail():
        raise NativeUnavailable("no compiler")

    monkeypatch.setattr(cpu_decode_ops.KERNEL, "_once", OnceKernel(fail))
    engine = load_engine(str(tiny_checkpoint), device="cpu", dtype="float32", context_length=64)
    assert engine.step.decoder is None
    assert cpu_decode_ops.why_unavailable() == "NativeUnavailable: no compiler"
    with torch.inference_mode():
        engine.model(torch.tensor([[1, 2, 3]]), 0, engine.cache)
        logits = engine.step(torch.tensor(4), 3)
    assert logits.shape == (engine.model.config.vocab_size,) and torch.isfinite(logits).all()


@needs_kernel
def test_a_model_the_kernels_were_not_built_for_keeps_its_modules(tmp_path, shared_dir):
    engine = _engine(tmp_path, shared_dir, {**TINY_CONFIG, "head_dim": 24}, "float32", None)
    assert engine.step.decoder is None  # the attention kernel takes heads of 16k values
    assert cpu_decode.build(engine.model, engine.cache) is None
    fp16 = _engine(tmp_path / "fp16", shared_dir, UNTIED, "float16", None)
    assert fp16.step.decoder is None  # the C ops take bf16 and fp32
