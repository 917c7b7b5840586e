"""A model that does not fit in memory is refused before loading, with the numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from qwen3tui.engine import memory_fit
from qwen3tui.engine.config import Qwen3Config
from qwen3tui.engine.memory_fit import ModelTooLargeError, check_fits, estimate


@pytest.fixture
def qwen3_1_7b(shared_dir: Path) -> Qwen3Config:
    return Qwen3Config.from_dir(shared_dir)


def test_the_estimate_is_the_weights_in_their_dtype_plus_the_kv_cache(
    qwen3_1_7b: Qwen3Config,
) -> None:
    need = estimate(qwen3_1_7b, "bfloat16", 32768)
    assert need.weights == qwen3_1_7b.num_parameters * 2
    # K and V, per layer, per key/value head, per dimension, per token, 2 bytes each.
    assert need.kv_cache == 2 * 28 * 8 * 128 * 32768 * 2
    assert need.total == need.weights + need.kv_cache + memory_fit.RUNTIME_OVERHEAD_BYTES
    assert estimate(qwen3_1_7b, "float32", 32768).total > need.total


def test_quantized_weights_take_less_and_int4_least(qwen3_1_7b: Qwen3Config) -> None:
    bf16 = estimate(qwen3_1_7b, "bfloat16", 8192).weights
    int8 = estimate(qwen3_1_7b, "bfloat16", 8192, "int8").weights
    int4 = estimate(qwen3_1_7b, "bfloat16", 8192, "int4").weights
    assert bf16 > int8 > int4
    embedding = qwen3_1_7b.vocab_size * qwen3_1_7b.hidden_size
    assert int8 > embedding * 2  # the embedding table stays in bf16 for lookups


def test_a_model_that_fits_passes_and_one_that_does_not_is_refused_with_the_numbers(
    qwen3_1_7b: Qwen3Config,
) -> None:
    need = estimate(qwen3_1_7b, "bfloat16", 8192)
    check_fits(need, need.total, "cpu", "Qwen/Qwen3-1.7B")
    check_fits(need, None, "mps", "Qwen/Qwen3-1.7B")  # free memory unknown: not refused

    with pytest.raises(ModelTooLargeError) as refused:
        check_fits(need, 2 * 2**30, "cuda:0", "Qwen/Qwen3-1.7B")

    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(
        f"Qwen/Qwen3-1.7B does not fit: it needs about {need.total / 2**30:.1f} GiB"
    )
    assert "but only 2.0 GiB is free on cuda:0." in message
    assert "--quantize" in message


def test_free_ram_is_read_from_the_system() -> None:
    free = memory_fit.free_ram_bytes()
    assert free is None or free > 0


def test_loading_is_refused_before_any_weight_is_read(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qwen3tui.engine import engine as engine_module
    from qwen3tui.engine import load_engine

    def read_weights(*args: object, **kwargs: object) -> None:
        raise AssertionError("the weights were read")

    monkeypatch.setattr(memory_fit, "available_bytes", lambda device: 1 << 20)  # 1 MiB free
    monkeypatch.setattr(engine_module, "load_model", read_weights)

    with pytest.raises(ModelTooLargeError, match=r"but only 0\.0 GiB is free RAM\."):
        load_engine(str(tiny_checkpoint), device="cpu", dtype="float32", context_length=64)
