"""Write a Qwen3 checkpoint with random weights in the exact Hugging Face layout.

Tests and benchmarks use it where real weights cannot be downloaded: speed and numerical
parity do not depend on the weights' values. The tokenizer and generation files are copied
from a directory that has the real ones.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "generation_config.json")

TINY_CONFIG: dict[str, Any] = {
    "architectures": ["Qwen3ForCausalLM"],
    "model_type": "qwen3",
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "head_dim": 16,
    "hidden_act": "silu",
    "hidden_size": 64,
    "initializer_range": 0.02,
    "intermediate_size": 128,
    "max_position_embeddings": 40960,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-6,
    "rope_scaling": None,
    "rope_theta": 1000000,
    "sliding_window": None,
    "use_sliding_window": False,
    "tie_word_embeddings": True,
    "torch_dtype": "float32",
    "use_cache": True,
    "vocab_size": 151936,
}


def tensor_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every tensor name of a Qwen3ForCausalLM checkpoint and its shape."""
    h, inter, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    hd = config.get("head_dim") or h // config["num_attention_heads"]
    q, kv = config["num_attention_heads"] * hd, config["num_key_value_heads"] * hd
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (v, h)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes.update(
            {
                p + "input_layernorm.weight": (h,),
                p + "self_attn.q_proj.weight": (q, h),
                p + "self_attn.k_proj.weight": (kv, h),
                p + "self_attn.v_proj.weight": (kv, h),
                p + "self_attn.o_proj.weight": (h, q),
                p + "self_attn.q_norm.weight": (hd,),
                p + "self_attn.k_norm.weight": (hd,),
                p + "post_attention_layernorm.weight": (h,),
                p + "mlp.gate_proj.weight": (inter, h),
                p + "mlp.up_proj.weight": (inter, h),
                p + "mlp.down_proj.weight": (h, inter),
            }
        )
    shapes["model.norm.weight"] = (h,)
    if not config.get("tie_word_embeddings", True):
        shapes["lm_head.weight"] = (v, h)
    return shapes


def write_random_checkpoint(
    out_dir: str | Path,
    *,
    config: dict[str, Any] | None = None,
    tokenizer_dir: str | Path | None = None,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    shards: int = 1,
    std: float = 0.02,
) -> Path:
    """Write config.json, random safetensors weights and the tokenizer files to `out_dir`."""
    config = dict(TINY_CONFIG if config is None else config)
    config["torch_dtype"] = str(dtype).removeprefix("torch.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    # The embedding matrix is padded past the tokenizer's last id; a trained model never picks
    # those rows, so give them zero weights or a random model would stream empty text.
    real_vocab = _tokenizer_size(tokenizer_dir) if tokenizer_dir is not None else None
    names = list(tensor_shapes(config).items())
    per_shard = -(-len(names) // shards)
    weight_map: dict[str, str] = {}
    for s in range(shards):
        chunk = names[s * per_shard : (s + 1) * per_shard]
        tensors = {}
        for name, shape in chunk:
            if name.endswith("norm.weight"):
                # Norm weights near 1, as trained models have them.
                t = 1.0 + 0.1 * torch.randn(shape, generator=gen)
            else:
                t = std * torch.randn(shape, generator=gen)
                if real_vocab and name in ("model.embed_tokens.weight", "lm_head.weight"):
                    t[real_vocab:] = 0
            tensors[name] = t.to(dtype)
        fname = (
            "model.safetensors" if shards == 1 else f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        )
        save_file(tensors, str(out / fname), metadata={"format": "pt"})
        weight_map.update({n: fname for n, _ in chunk})
    if shards > 1:
        index = {"metadata": {}, "weight_map": weight_map}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    (out / "config.json").write_text(json.dumps(config, indent=2))
    if tokenizer_dir is not None:
        for fname in TOKENIZER_FILES:
            src = Path(tokenizer_dir) / fname
            if src.exists():
                shutil.copyfile(src, out / fname)
    return out


def _tokenizer_size(tokenizer_dir: str | Path) -> int | None:
    from tokenizers import Tokenizer

    file = Path(tokenizer_dir) / "tokenizer.json"
    return (
        Tokenizer.from_file(str(file)).get_vocab_size(with_added_tokens=True)
        if file.exists()
        else None
    )
