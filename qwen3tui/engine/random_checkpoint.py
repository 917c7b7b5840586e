"""Write a Qwen3 checkpoint with random weights in the exact Hugging Face layout.

Tests and benchmarks use it where real weights cannot be downloaded: speed and numerical
parity do not depend on the weights' values. Dense (`qwen3`) and mixture-of-experts
(`qwen3_moe`) models, optionally in Qwen's block-wise FP8 format. The tokenizer and generation
files are copied from a directory that has the real ones.
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


TINY_MOE_CONFIG: dict[str, Any] = {
    **TINY_CONFIG,
    "architectures": ["Qwen3MoeForCausalLM"],
    "model_type": "qwen3_moe",
    "tie_word_embeddings": False,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [],
    "moe_intermediate_size": 32,
    "norm_topk_prob": True,
    "num_experts": 8,
    "num_experts_per_tok": 2,
    "output_router_logits": False,
    "router_aux_loss_coef": 0.001,
}


def is_sparse_layer(config: dict[str, Any], layer: int) -> bool:
    """transformers' rule for which Qwen3-MoE layers have experts (else a dense MLP)."""
    return (
        config.get("model_type") == "qwen3_moe"
        and config.get("num_experts", 0) > 0
        and layer not in (config.get("mlp_only_layers") or [])
        and (layer + 1) % config.get("decoder_sparse_step", 1) == 0
    )


def tensor_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every tensor name of a Qwen3ForCausalLM or Qwen3MoeForCausalLM checkpoint, and its
    shape."""
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
            }
        )
        if is_sparse_layer(config, i):
            e, mi = config["num_experts"], config["moe_intermediate_size"]
            shapes[p + "mlp.gate.weight"] = (e, h)
            for x in range(e):
                shapes[f"{p}mlp.experts.{x}.gate_proj.weight"] = (mi, h)
                shapes[f"{p}mlp.experts.{x}.up_proj.weight"] = (mi, h)
                shapes[f"{p}mlp.experts.{x}.down_proj.weight"] = (h, mi)
        else:
            shapes[p + "mlp.gate_proj.weight"] = (inter, h)
            shapes[p + "mlp.up_proj.weight"] = (inter, h)
            shapes[p + "mlp.down_proj.weight"] = (h, inter)
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
    fp8_block: tuple[int, int] | None = None,
) -> Path:
    """Write config.json, random safetensors weights and the tokenizer files to `out_dir`.

    With `fp8_block`, the projections are stored as Qwen's FP8 releases store them: float8
    values and a float32 `weight_scale_inv` per block (edge blocks may be partial).
    """
    config = dict(TINY_CONFIG if config is None else config)
    config["torch_dtype"] = str(dtype).removeprefix("torch.")
    if fp8_block is not None:
        config["quantization_config"] = {
            "activation_scheme": "dynamic",
            "fmt": "e4m3",
            "quant_method": "fp8",
            "weight_block_size": list(fp8_block),
        }
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
            if fp8_block is not None and name.endswith("_proj.weight"):
                tensors[name], tensors[name + "_scale_inv"] = fp8_quantize(t, fp8_block)
                continue
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


FP8_MAX = 448.0  # the largest float8_e4m3fn value


def fp8_quantize(w: torch.Tensor, block: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(float8 values, float32 scale per block) with values * scale ~= w, as Qwen's FP8 files
    hold them."""
    bn, bk = block
    n, k = w.shape
    rows, cols = -(-n // bn), -(-k // bk)
    padded = torch.zeros(rows * bn, cols * bk)
    padded[:n, :k] = w.float()
    blocks = padded.view(rows, bn, cols, bk)
    scale = blocks.abs().amax(dim=(1, 3)).clamp(min=1e-12) / FP8_MAX
    values = (blocks / scale[:, None, :, None]).view(rows * bn, cols * bk)[:n, :k]
    return values.to(torch.float8_e4m3fn).contiguous(), scale.float()


def _tokenizer_size(tokenizer_dir: str | Path) -> int | None:
    from tokenizers import Tokenizer

    file = Path(tokenizer_dir) / "tokenizer.json"
    return (
        Tokenizer.from_file(str(file)).get_vocab_size(with_added_tokens=True)
        if file.exists()
        else None
    )
