"""The model's architecture, read from its `config.json`. Nothing about one size is hard-coded.

Every value is checked before anything is built from it: a hostile or damaged config.json is a
one-line error naming the value and the file, never a traceback or a huge allocation.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ModelLoadError

DENSE_ARCHITECTURES = ("Qwen3ForCausalLM",)
MOE_ARCHITECTURES = ("Qwen3MoeForCausalLM",)
SUPPORTED_ARCHITECTURES = DENSE_ARCHITECTURES + MOE_ARCHITECTURES
FIX_CONFIG = "Re-download the model or fix its config.json."


@dataclass(frozen=True)
class RopeScaling:
    """YaRN context extension (the only scaling Qwen3 documents)."""

    factor: float
    original_max_position_embeddings: int
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    attention_factor: float | None = None
    mscale: float | None = None
    mscale_all_dim: float | None = None
    truncate: bool = True


@dataclass(frozen=True)
class Qwen3Config:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    rope_scaling: RopeScaling | None = None
    torch_dtype: str | None = None
    # Mixture of experts (`qwen3_moe`); num_experts == 0 is a dense model.
    num_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    norm_topk_prob: bool = False
    decoder_sparse_step: int = 1
    mlp_only_layers: tuple[int, ...] = ()
    # Qwen's FP8 checkpoints: float8_e4m3fn weights with one scale per block of this shape.
    fp8_block: tuple[int, int] | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config.json") -> Qwen3Config:
        archs = raw.get("architectures") or []
        archs = archs if isinstance(archs, list) else []
        model_type = raw.get("model_type")
        moe = model_type == "qwen3_moe" or any(a in MOE_ARCHITECTURES for a in archs)
        if model_type not in ("qwen3", "qwen3_moe") and not any(
            a in SUPPORTED_ARCHITECTURES for a in archs
        ):
            kind = model_type or (archs[0] if archs else "unknown")
            raise ModelLoadError(
                f"{source} describes a '{kind}' model, not a Qwen3 model.",
                "Use a Qwen3 checkpoint such as Qwen/Qwen3-1.7B or Qwen/Qwen3-30B-A3B.",
            )
        read = _Reader(raw, source)
        heads = read.integer("num_attention_heads")
        hidden = read.integer("hidden_size")
        layers = read.integer("num_hidden_layers")
        kv_heads = read.integer("num_key_value_heads", heads)
        if heads % kv_heads:
            wanted = f"a divisor of num_attention_heads ({heads})"
            read.fail("num_key_value_heads", kv_heads, wanted)
        head_dim = read.integer("head_dim", hidden // heads if hidden >= heads else None)
        if head_dim % 2:
            read.fail("head_dim", head_dim, "an even number (rotary embeddings pair dimensions)")
        experts = read.integer("num_experts", 0, minimum=0) if moe else 0
        mlp_only = read.layers("mlp_only_layers", layers) if experts else ()
        return cls(
            vocab_size=read.integer("vocab_size"),
            hidden_size=hidden,
            intermediate_size=read.integer("intermediate_size"),
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            head_dim=head_dim,
            rms_norm_eps=read.number("rms_norm_eps", 1e-6),
            rope_theta=read.number("rope_theta", 1_000_000.0, _rope_params(raw)),
            max_position_embeddings=read.integer("max_position_embeddings", 40960),
            tie_word_embeddings=read.flag("tie_word_embeddings", False),
            rope_scaling=_parse_rope_scaling(raw, read),
            torch_dtype=raw.get("torch_dtype") or raw.get("dtype"),
            num_experts=experts,
            num_experts_per_tok=read.integer("num_experts_per_tok", None, maximum=experts)
            if experts
            else 0,
            moe_intermediate_size=read.integer("moe_intermediate_size") if experts else 0,
            norm_topk_prob=read.flag("norm_topk_prob", False) if experts else False,
            decoder_sparse_step=read.integer("decoder_sparse_step", 1) if experts else 1,
            mlp_only_layers=mlp_only,
            fp8_block=_parse_quantization(raw, read),
        )

    @classmethod
    def from_dir(cls, path: str | Path) -> Qwen3Config:
        file = Path(path) / "config.json"
        try:
            raw = json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelLoadError(
                f"{path} has no config.json.", "Point --model at a Qwen3 checkpoint directory."
            ) from None
        except (OSError, ValueError) as err:
            raise ModelLoadError(
                f"{file} cannot be read ({err}).", "Re-download the model."
            ) from None
        if not isinstance(raw, dict):
            raise ModelLoadError(f"{file} is not a JSON object.", "Re-download the model.")
        return cls.from_dict(raw, str(file))

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    def is_sparse_layer(self, layer: int) -> bool:
        """Whether `layer` has a mixture-of-experts block (else a dense SwiGLU MLP), by the
        rule transformers' Qwen3Moe uses."""
        return (
            self.num_experts > 0
            and layer not in self.mlp_only_layers
            and (layer + 1) % self.decoder_sparse_step == 0
        )

    @property
    def num_parameters(self) -> int:
        return self._count_parameters(self.num_experts)

    @property
    def num_active_parameters(self) -> int:
        """Parameters one token reads: the routed experts only, for a mixture of experts."""
        return self._count_parameters(self.num_experts_per_tok)

    def _count_parameters(self, experts: int) -> int:
        h, hd = self.hidden_size, self.head_dim
        attn = h * hd * (2 * self.num_attention_heads + 2 * self.num_key_value_heads) + 2 * hd
        total = 0
        for layer in range(self.num_hidden_layers):
            if self.is_sparse_layer(layer):
                mlp = self.num_experts * h + experts * 3 * h * self.moe_intermediate_size
            else:
                mlp = 3 * h * self.intermediate_size
            total += attn + mlp + 2 * h
        embed = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return total + embed + h


def check_tokenizer_fits(config: Qwen3Config, token_ids: int, path: str | Path) -> None:
    """Every token id the tokenizer can produce must have a row in the embedding."""
    if token_ids > config.vocab_size:
        raise ModelLoadError(
            f"{Path(path) / 'config.json'}: vocab_size is {config.vocab_size}, but the tokenizer"
            f" has {token_ids} token ids; the ones past it have no embedding.",
            "The tokenizer and the weights belong to different models; re-download.",
        )


class _Reader:
    """Typed, range-checked fields of one config.json; each failure names the value and file."""

    def __init__(self, raw: dict[str, Any], source: str) -> None:
        self.raw, self.source = raw, source

    def fail(self, key: str, value: Any, wanted: str) -> None:
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise ModelLoadError(f"{self.source}: {key} is {shown}; it must be {wanted}.", FIX_CONFIG)

    def integer(
        self,
        key: str,
        default: Any = None,
        minimum: int = 1,
        maximum: int | None = None,
        where: dict[str, Any] | None = None,
    ) -> int:
        value = (where if where is not None else self.raw).get(key)
        if value is None:
            if default is None:
                self.fail(key, value, f"an integer of at least {minimum} (it is required)")
            value = default
        # JSON has one number type: 8.0 is 8, but 2.5 layers or `true` heads are errors.
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(key, value, f"an integer of at least {minimum}")
        if maximum is not None and value > maximum:
            self.fail(key, value, f"an integer from {minimum} to {maximum}")
        return value

    def number(self, key: str, default: float, where: dict[str, Any] | None = None) -> float:
        value = (where or {}).get(key, self.raw.get(key))
        value = default if value is None else value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, value, "a positive number")
        if not (math.isfinite(value) and value > 0):
            self.fail(key, value, "a positive finite number")
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.raw.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(key, value, "true or false")
        return value

    def layers(self, key: str, layers: int) -> tuple[int, ...]:
        value = self.raw.get(key) or []
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v < layers for v in value
        ):
            self.fail(key, value, f"a list of layer numbers from 0 to {layers - 1}")
        return tuple(value)


def _rope_params(raw: dict[str, Any]) -> dict[str, Any]:
    # transformers 5 writes RoPE settings under `rope_parameters`; older configs at top level.
    params = raw.get("rope_parameters")
    return params if isinstance(params, dict) else {}


def _parse_rope_scaling(raw: dict[str, Any], read: _Reader) -> RopeScaling | None:
    scaling = raw.get("rope_scaling") or raw.get("rope_parameters") or None
    if not scaling:
        return None
    if not isinstance(scaling, dict):
        read.fail("rope_scaling", scaling, "an object")
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return None
    if kind != "yarn":
        raise ModelLoadError(
            f"{read.source} asks for '{kind}' RoPE scaling; qwen3tui supports YaRN only.",
            "Remove rope_scaling from config.json or use YaRN.",
        )
    original = read.integer(
        "original_max_position_embeddings",
        read.integer("max_position_embeddings", 40960),
        where=scaling,
    )
    factor = scaling.get("factor")
    if factor is None:
        factor = read.integer("max_position_embeddings") / original
    factor = read.number("factor", 1.0, {"factor": factor})
    return RopeScaling(
        factor=factor,
        original_max_position_embeddings=original,
        beta_fast=read.number("beta_fast", 32.0, scaling),
        beta_slow=read.number("beta_slow", 1.0, scaling),
        attention_factor=_optional_float(scaling, "attention_factor", read),
        mscale=_optional_float(scaling, "mscale", read),
        mscale_all_dim=_optional_float(scaling, "mscale_all_dim", read),
        truncate=bool(scaling.get("truncate", True)),
    )


def _optional_float(scaling: dict[str, Any], key: str, read: _Reader) -> float | None:
    return None if scaling.get(key) is None else read.number(key, 1.0, scaling)


def _parse_quantization(raw: dict[str, Any], read: _Reader) -> tuple[int, int] | None:
    """The FP8 block shape of a `quant_method: fp8` checkpoint; None for plain weights."""
    quant = raw.get("quantization_config")
    if quant is None:
        return None
    method = quant.get("quant_method") if isinstance(quant, dict) else quant
    if method != "fp8":
        raise ModelLoadError(
            f"{read.source}: quantization_config.quant_method is {method!r}; qwen3tui loads"
            " unquantized and block-wise FP8 ('fp8') Qwen3 checkpoints.",
            "Use the model's bf16 or FP8 release.",
        )
    if quant.get("fmt", "e4m3") != "e4m3":
        read.fail("quantization_config.fmt", quant.get("fmt"), "'e4m3'")
    block = quant.get("weight_block_size")
    if not (
        isinstance(block, list)
        and len(block) == 2
        and all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in block)
    ):
        read.fail("quantization_config.weight_block_size", block, "two positive integers")
    return (block[0], block[1])
