"""Loading weights: single and sharded files, dtype conversion, and damaged checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from qwen3tui.engine.config import Qwen3Config
from qwen3tui.engine.errors import ModelLoadError
from qwen3tui.engine.random_checkpoint import TINY_CONFIG, write_random_checkpoint
from qwen3tui.engine.weights import load_model

CONFIG = {**TINY_CONFIG, "vocab_size": 256}


def load(path, dtype=torch.float32):
    return load_model(path, Qwen3Config.from_dir(path), torch.device("cpu"), dtype, 64)


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_sharded_checkpoint_loads_the_same_weights_as_a_single_file(tmp_path):
    single = load(write_random_checkpoint(tmp_path / "one", config=CONFIG, seed=9))
    sharded = load(write_random_checkpoint(tmp_path / "three", config=CONFIG, seed=9, shards=3))
    a, b = params(single), params(sharded)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_weights_are_converted_to_the_requested_dtype(tmp_path):
    path = write_random_checkpoint(tmp_path, config=CONFIG, seed=2, dtype=torch.bfloat16)
    as_bf16, as_fp32 = load(path, torch.bfloat16), load(path, torch.float32)
    w16 = as_bf16.embed_tokens.weight
    w32 = as_fp32.embed_tokens.weight
    assert w16.dtype == torch.bfloat16 and w32.dtype == torch.float32
    assert torch.equal(w16.float(), w32)


def test_a_truncated_weight_file_is_reported_as_corrupt(tmp_path):
    path = write_random_checkpoint(tmp_path, config=CONFIG)
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="corrupt or unreadable"):
        load(path)


def test_a_missing_shard_named_in_the_index_is_reported(tmp_path):
    path = write_random_checkpoint(tmp_path, config=CONFIG, shards=2)
    (path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="lacks weight shard model-00002"):
        load(path)


def test_weights_of_another_size_do_not_fit_the_config(tmp_path):
    path = write_random_checkpoint(tmp_path, config=CONFIG)
    bigger = {**CONFIG, "hidden_size": 128}
    (path / "config.json").write_text(json.dumps(bigger))
    with pytest.raises(ModelLoadError, match="does not fit"):
        load(path)
