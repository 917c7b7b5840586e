"""A damaged or hostile checkpoint is one clear line naming the value and the file, found before
anything is allocated for it: never a traceback, never gigabytes spent on a lie."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from qwen3tui.engine import weights
from qwen3tui.engine.config import Qwen3Config
from qwen3tui.engine.errors import ModelLoadError
from qwen3tui.engine.random_checkpoint import TINY_CONFIG, TINY_MOE_CONFIG, write_random_checkpoint

CONFIG = {**TINY_CONFIG, "vocab_size": 256}


@pytest.fixture
def checkpoint(tmp_path):
    return write_random_checkpoint(tmp_path / "model", config=CONFIG)


def edit_config(path, **changes) -> None:
    config = json.loads((path / "config.json").read_text())
    config.update(changes)
    (path / "config.json").write_text(json.dumps(config))  # NaN is written as NaN


def edit_tensors(path, change) -> None:
    tensors = load_file(str(path / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})


def load_error(path) -> str:
    """The one-line message loading `path` fails with."""
    with pytest.raises(ModelLoadError) as err:
        config = Qwen3Config.from_dir(path)
        weights.load_model(path, config, torch.device("cpu"), torch.float32, 64)
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("vocab_size", -1, "vocab_size is -1; it must be an integer of at least 1"),
        ("num_attention_heads", 0, "num_attention_heads is 0"),
        ("num_key_value_heads", 0, "num_key_value_heads is 0"),
        ("num_key_value_heads", 3, "num_key_value_heads is 3; it must be a divisor"),
        ("hidden_size", 2.5, "hidden_size is 2.5"),
        ("num_hidden_layers", "2", "num_hidden_layers is '2'"),
        ("rms_norm_eps", float("nan"), "rms_norm_eps is nan; it must be a positive finite"),
        ("rms_norm_eps", -1e-6, "rms_norm_eps is -1e-06"),
        ("rope_theta", float("inf"), "rope_theta is inf"),
        ("head_dim", 15, "head_dim is 15; it must be an even number"),
        ("tie_word_embeddings", "yes", "tie_word_embeddings is 'yes'"),
    ],
)
def test_a_bad_config_value_is_named_with_its_file(checkpoint, field, value, says):
    edit_config(checkpoint, **{field: value})
    message = load_error(checkpoint)
    assert says in message
    assert str(checkpoint / "config.json") in message


def test_moe_config_values_are_checked_too(checkpoint):
    edit_config(
        checkpoint,
        model_type="qwen3_moe",
        num_experts=4,
        num_experts_per_tok=5,
        moe_intermediate_size=32,
    )
    assert "num_experts_per_tok is 5; it must be an integer from 1 to 4" in load_error(checkpoint)
    edit_config(checkpoint, num_experts_per_tok=2, mlp_only_layers=[7])
    assert "mlp_only_layers is [7]" in load_error(checkpoint)


def test_a_scalar_tensor_where_a_vector_belongs_is_named_with_its_file(checkpoint):
    edit_tensors(checkpoint, lambda t: t.update({"model.norm.weight": torch.tensor(1.0)}))
    message = load_error(checkpoint)
    assert "model.safetensors: tensor model.norm.weight has shape ()" in message
    assert "(64)" in message


def test_nan_weights_are_named_with_their_file(checkpoint):
    def poison(tensors):
        tensors["model.layers.1.mlp.down_proj.weight"][3, 5] = float("nan")

    edit_tensors(checkpoint, poison)
    message = load_error(checkpoint)
    assert "model.safetensors: tensor model.layers.1.mlp.down_proj.weight holds NaN" in message


def test_infinite_weights_are_refused_too(checkpoint):
    def poison(tensors):
        tensors["model.embed_tokens.weight"][0, 0] = float("-inf")

    edit_tensors(checkpoint, poison)
    assert "model.embed_tokens.weight holds NaN or infinite values" in load_error(checkpoint)


def test_weights_too_large_for_float16_say_so(checkpoint):
    def enlarge(tensors):
        tensors["model.layers.0.self_attn.o_proj.weight"][0, 0] = 1e6

    edit_tensors(checkpoint, enlarge)
    with pytest.raises(ModelLoadError, match="o_proj.weight has values too large for float16"):
        weights.load_model(
            checkpoint, Qwen3Config.from_dir(checkpoint), torch.device("cpu"), torch.float16, 64
        )


def test_a_float_weight_stored_as_integers_is_refused(checkpoint):
    def to_int(tensors):
        tensors["model.norm.weight"] = tensors["model.norm.weight"].to(torch.int16)

    edit_tensors(checkpoint, to_int)
    assert "tensor model.norm.weight is int16" in load_error(checkpoint)


def test_100000_layers_fail_before_the_model_is_built(checkpoint, monkeypatch):
    """The layer count is checked against the files before the model (or even the list of the
    million tensors such a config would call for) exists."""

    def must_not_run(*args, **kwargs):
        raise AssertionError("built before the checkpoint was checked")

    monkeypatch.setattr(weights, "Qwen3", must_not_run)
    monkeypatch.setattr(weights, "expected_tensors", must_not_run)
    edit_config(checkpoint, num_hidden_layers=100_000)
    message = load_error(checkpoint)
    assert "num_hidden_layers is 100000, but the weights (model.safetensors) hold 2 layers" in (
        message
    )


def test_a_billion_experts_fail_before_the_model_is_built(tmp_path, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("built before the checkpoint was checked")

    path = write_random_checkpoint(tmp_path, config={**TINY_MOE_CONFIG, "vocab_size": 256})
    monkeypatch.setattr(weights, "Qwen3", must_not_run)
    monkeypatch.setattr(weights, "expected_tensors", must_not_run)
    edit_config(path, num_experts=10**9)
    assert "num_experts is 1000000000, but the weights hold 8 experts" in load_error(path)


def test_fewer_layers_than_the_files_hold_is_a_mismatch_not_a_silent_half_model(checkpoint):
    edit_config(checkpoint, num_hidden_layers=1)
    assert "num_hidden_layers is 1, but the weights (model.safetensors) hold 2" in load_error(
        checkpoint
    )


def test_a_header_claiming_more_data_than_the_file_holds_is_corrupt(checkpoint, monkeypatch):
    """A shape is only believed when the file holds its bytes: a header promising a terabyte
    table costs nothing."""
    file = checkpoint / "model.safetensors"
    data = file.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    header["model.embed_tokens.weight"]["shape"] = [10**12, 64]
    raw = json.dumps(header).encode()
    file.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + length :])
    monkeypatch.setattr(weights, "Qwen3", None)  # never reached
    message = load_error(checkpoint)
    assert "model.safetensors is corrupt" in message
    assert "model.embed_tokens.weight: shape [1000000000000, 64]" in message


def test_tokenizer_ids_beyond_the_embedding_are_refused_at_load(tmp_path, shared_dir):
    from qwen3tui.engine import load_engine

    path = write_random_checkpoint(tmp_path, config=CONFIG, tokenizer_dir=shared_dir)
    with pytest.raises(ModelLoadError) as err:
        load_engine(str(path), device="cpu", dtype="float32", context_length=64)
    message = str(err.value)
    assert "config.json: vocab_size is 256, but the tokenizer has 151669 token ids" in message
    assert "\n" not in message
