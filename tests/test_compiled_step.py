"""CUDA's prefill paths checked on the CPU: flash attention's causal alignment and the padded
chunks of the prefill graphs; the background build's share of the GIL. (The fast decode step's
kernels are in test_fast_decode.py.)"""

from __future__ import annotations

import pytest
import torch

from qwen3tui.engine.config import Qwen3Config
from qwen3tui.engine.kv_cache import KVCache
from qwen3tui.engine.model import Qwen3


def tiny_model() -> Qwen3:
    config = Qwen3Config.from_dict(
        {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "vocab_size": 300,
            "max_position_embeddings": 1024,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1e6,
            "tie_word_embeddings": True,
            "model_type": "qwen3",
        }
    )
    torch.manual_seed(0)
    model = Qwen3(config, max_positions=1024)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    model.setup_rope(torch.device("cpu"), torch.float32)
    return model.eval()


def test_a_chunk_after_cached_tokens_attends_the_same_through_the_flash_path():
    """CUDA's flash path states the chunk's mask as causal aligned to the end of the keys; on
    the CPU PyTorch applies the same bias by materializing it, which checks the alignment."""
    model = tiny_model()
    config = model.config
    ids = torch.randint(0, config.vocab_size, (1, 300), generator=torch.Generator().manual_seed(2))

    def run() -> torch.Tensor:
        cache = KVCache(config, 1024, torch.device("cpu"), torch.float32)
        with torch.inference_mode():
            model(ids[:, :150], 0, cache)
            return model(ids[:, 150:], 150, cache, last_only=False)  # 150 queries after 150

    masked = run()
    for layer in model.layers:
        layer.flash = True
    try:
        flash = run()
    finally:
        for layer in model.layers:
            layer.flash = False
    torch.testing.assert_close(flash, masked, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("start", [0, 150])
def test_a_padded_chunk_at_device_positions_equals_the_plain_prefill(start):
    """CUDA's prefill graphs: a chunk padded to its graph's length, positions on the device.
    The padding must change neither this chunk's logits nor any later step."""
    model = tiny_model()
    config = model.config
    ids = torch.randint(0, config.vocab_size, (1, 200), generator=torch.Generator().manual_seed(3))
    real, padded = 20, 32
    plain = KVCache(config, 1024, torch.device("cpu"), torch.float32)
    graphed = KVCache(config, 1024, torch.device("cpu"), torch.float32)
    chunk = ids[:, start : start + real]
    garbage = torch.full((1, padded - real), 7)
    with torch.inference_mode():
        if start:
            model(ids[:, :start], 0, plain)
            model(ids[:, :start], 0, graphed)
        expected = model(chunk, start, plain)[0, -1]
        got = model.prefill_chunk(
            torch.cat([chunk, garbage], dim=1),
            torch.arange(start, start + padded),
            torch.tensor([real - 1]),
            graphed,
            torch.tensor([0, padded], dtype=torch.int32),
        )
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
        # The next token overwrites the first padded position and never sees the rest.
        after = start + real
        nxt = ids[:, after : after + 1]
        torch.testing.assert_close(model(nxt, after, graphed), model(nxt, after, plain))


def test_the_background_build_takes_the_gil_in_short_slices_and_gives_the_interval_back(
    monkeypatch,
):
    """While the kernels build (loaded from Triton's cache after a child process compiled
    them: Python), the decode thread waits for the GIL after every step: the build runs with
    a switch interval far below a step's time, and the default comes back once it is done,
    also when it fails."""
    import sys

    from qwen3tui.engine import decode_step

    model = tiny_model()
    step = decode_step.GraphedStep(
        model, KVCache(model.config, 64, torch.device("cpu"), torch.float32), fast=False
    )
    seen = []

    def build(*_args):
        seen.append(sys.getswitchinterval())
        return "the built decoder"

    def child(*_args):
        seen.append(sys.getswitchinterval())
        order.append("child")

    order: list[str] = []
    before = sys.getswitchinterval()
    monkeypatch.setattr(decode_step, "compile_in_child", child)
    monkeypatch.setattr(decode_step, "build_fast_decoder", build)
    monkeypatch.setattr(decode_step, "build_fast_prefill", build)
    step._compile()
    assert step.compiled_ready == "the built decoder"
    assert order == ["child"]
    assert seen == pytest.approx([decode_step.BUILD_SWITCH_INTERVAL_S] * 3)  # microseconds
    assert decode_step.BUILD_SWITCH_INTERVAL_S <= 0.0005 < before
    assert sys.getswitchinterval() == before

    def fail(*_args):
        raise RuntimeError("ptxas died")

    monkeypatch.setattr(decode_step, "build_fast_decoder", fail)
    step._compile()
    assert step.compile_error == "RuntimeError: ptxas died"
    assert sys.getswitchinterval() == before

    def set_by_the_app(*_args):  # e.g. the chat, for a model it then runs on the CPU
        sys.setswitchinterval(0.001)

    monkeypatch.setattr(decode_step, "build_fast_decoder", set_by_the_app)
    try:
        step._compile()
        assert sys.getswitchinterval() == pytest.approx(0.001)  # theirs stands
    finally:
        sys.setswitchinterval(before)


def test_a_child_that_could_not_compile_leaves_the_build_to_compile_itself(monkeypatch):
    """The child only warms Triton's cache: when it fails, the build still builds."""
    from qwen3tui.engine import decode_step

    model = tiny_model()
    step = decode_step.GraphedStep(
        model, KVCache(model.config, 64, torch.device("cpu"), torch.float32), fast=False
    )
    monkeypatch.setattr(decode_step, "compile_in_child", lambda *_: "OSError: no python")
    monkeypatch.setattr(decode_step, "build_fast_decoder", lambda *_: "the built decoder")
    monkeypatch.setattr(decode_step, "build_fast_prefill", lambda *_: True)
    monkeypatch.setattr(decode_step, "build_graph_sampler", lambda fast: f"the draw for {fast}")
    step._compile()
    assert step.compiled_ready == "the built decoder"
    assert step.prefill_ready is True
    assert step.picker_ready == "the draw for the built decoder"
    assert step.child_error == "OSError: no python"
    assert step.compile_error is None


def test_a_draw_that_does_not_build_still_leaves_the_fast_step(monkeypatch):
    from qwen3tui.engine import decode_step

    model = tiny_model()
    step = decode_step.GraphedStep(
        model, KVCache(model.config, 64, torch.device("cpu"), torch.float32), fast=False
    )

    def fail(_fast):
        raise RuntimeError("no sampling kernel")

    monkeypatch.setattr(decode_step, "compile_in_child", lambda *_: None)
    monkeypatch.setattr(decode_step, "build_fast_decoder", lambda *_: "the built decoder")
    monkeypatch.setattr(decode_step, "build_fast_prefill", lambda *_: True)
    monkeypatch.setattr(decode_step, "build_graph_sampler", fail)
    step._compile()
    assert step.compiled_ready == "the built decoder" and step.picker_ready is None
    assert step.compile_error == "draw: RuntimeError: no sampling kernel"
