"""The model's architecture, read from its `config.json`. Nothing about one size is hard-coded."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ModelLoadError

SUPPORTED_ARCHITECTURES = ("Qwen3ForCausalLM",)


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

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Qwen3Config:
        archs = raw.get("architectures") or []
        if raw.get("model_type") != "qwen3" and not any(
            a in SUPPORTED_ARCHITECTURES for a in archs
        ):
            kind = raw.get("model_type") or (archs[0] if archs else "unknown")
            raise ModelLoadError(
                f"config.json describes a '{kind}' model, not a dense Qwen3 model.",
                "Use a Qwen3 checkpoint such as Qwen/Qwen3-1.7B.",
            )
        try:
            heads = int(raw["num_attention_heads"])
            hidden = int(raw["hidden_size"])
            return cls(
                vocab_size=int(raw["vocab_size"]),
                hidden_size=hidden,
                intermediate_size=int(raw["intermediate_size"]),
                num_hidden_layers=int(raw["num_hidden_layers"]),
                num_attention_heads=heads,
                num_key_value_heads=int(raw.get("num_key_value_heads") or heads),
                head_dim=int(raw.get("head_dim") or hidden // heads),
                rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
                rope_theta=float(_rope_field(raw, "rope_theta", 1_000_000.0)),
                max_position_embeddings=int(raw.get("max_position_embeddings", 40960)),
                tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
                rope_scaling=_parse_rope_scaling(raw),
                torch_dtype=raw.get("torch_dtype") or raw.get("dtype"),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ModelLoadError(
                f"config.json is missing or has a bad value for {err}.",
                "Re-download the model or fix its config.json.",
            ) from None

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
        return cls.from_dict(raw)

    @property
    def num_parameters(self) -> int:
        h, hd = self.hidden_size, self.head_dim
        attn = h * hd * (2 * self.num_attention_heads + 2 * self.num_key_value_heads) + 2 * hd
        mlp = 3 * h * self.intermediate_size
        per_layer = attn + mlp + 2 * h
        embed = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return self.num_hidden_layers * per_layer + embed + h


def _rope_field(raw: dict[str, Any], key: str, default: Any) -> Any:
    # transformers 5 writes RoPE settings under `rope_parameters`; older configs at top level.
    params = raw.get("rope_parameters") or {}
    return params.get(key, raw.get(key, default))


def _parse_rope_scaling(raw: dict[str, Any]) -> RopeScaling | None:
    scaling = raw.get("rope_scaling") or raw.get("rope_parameters") or None
    if not scaling:
        return None
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return None
    if kind != "yarn":
        raise ModelLoadError(
            f"config.json asks for '{kind}' RoPE scaling; qwen3tui supports YaRN only.",
            "Remove rope_scaling from config.json or use YaRN.",
        )
    factor = scaling.get("factor")
    original = scaling.get("original_max_position_embeddings") or raw.get(
        "max_position_embeddings", 40960
    )
    if factor is None:
        factor = raw["max_position_embeddings"] / original
    return RopeScaling(
        factor=float(factor),
        original_max_position_embeddings=int(original),
        beta_fast=float(scaling.get("beta_fast") or 32.0),
        beta_slow=float(scaling.get("beta_slow") or 1.0),
        attention_factor=scaling.get("attention_factor"),
        mscale=scaling.get("mscale"),
        mscale_all_dim=scaling.get("mscale_all_dim"),
        truncate=bool(scaling.get("truncate", True)),
    )
