"""Load Hugging Face safetensors weights straight into the model, on its device and dtype.

The model is built on the meta device (no memory), then each parameter is allocated once on
the target device and filled tensor by tensor from the files, so the weights never exist twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from .config import Qwen3Config
from .errors import ModelLoadError
from .model import Qwen3
from .safetensors_reader import CorruptFile, StoredTensor, open_safetensors

# Where a checkpoint tensor goes: (our parameter, row offset into it).
Placement = tuple[str, int]


def placements(config: Qwen3Config) -> dict[str, Placement]:
    q = config.num_attention_heads * config.head_dim
    kv = config.num_key_value_heads * config.head_dim
    inter = config.intermediate_size
    plan: dict[str, Placement] = {
        "model.embed_tokens.weight": ("embed_tokens.weight", 0),
        "model.norm.weight": ("norm.weight", 0),
    }
    for i in range(config.num_hidden_layers):
        hub, ours = f"model.layers.{i}.", f"layers.{i}."
        plan.update(
            {
                hub + "input_layernorm.weight": (ours + "inputs.norm.weight", 0),
                hub + "self_attn.q_proj.weight": (ours + "inputs.qkv_proj.weight", 0),
                hub + "self_attn.k_proj.weight": (ours + "inputs.qkv_proj.weight", q),
                hub + "self_attn.v_proj.weight": (ours + "inputs.qkv_proj.weight", q + kv),
                hub + "self_attn.q_norm.weight": (ours + "inputs.q_norm.weight", 0),
                hub + "self_attn.k_norm.weight": (ours + "inputs.k_norm.weight", 0),
                hub + "self_attn.o_proj.weight": (ours + "output.o_proj.weight", 0),
                hub + "post_attention_layernorm.weight": (ours + "output.norm.weight", 0),
                hub + "mlp.gate_proj.weight": (ours + "output.gate_up_proj.weight", 0),
                hub + "mlp.up_proj.weight": (ours + "output.gate_up_proj.weight", inter),
                hub + "mlp.down_proj.weight": (ours + "output.down_proj.weight", 0),
            }
        )
    if not config.tie_word_embeddings:
        plan["lm_head.weight"] = ("lm_head.weight", 0)
    return plan


def weight_files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.exists():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError) as err:
            raise ModelLoadError(
                f"{index} is unreadable ({err}).", "Re-download the model."
            ) from None
        missing = [n for n in names if not (path / n).exists()]
        if missing:
            raise ModelLoadError(
                f"{path} lacks weight shard {missing[0]} named in its index.",
                "Re-download the model.",
            )
        return [path / n for n in names]
    single = path / "model.safetensors"
    if single.exists():
        return [single]
    others = sorted(path.glob("*.safetensors"))
    if others:
        return others
    raise ModelLoadError(
        f"{path} has no weights (no *.safetensors files).",
        "Download the full model, or point --model at a directory with model.safetensors.",
    )


def load_model(
    path: Path,
    config: Qwen3Config,
    device: torch.device,
    dtype: torch.dtype,
    max_positions: int,
    progress: Callable[[int, int], None] | None = None,
) -> Qwen3:
    with torch.device("meta"):
        model = Qwen3(config, max_positions)
    params = dict(model.named_parameters())
    filled: dict[str, int] = {}  # rows written so far per parameter
    plan = placements(config)
    files = weight_files(path)
    total, done = len(plan), 0
    for file in files:
        try:
            with _open_weights(file, device) as tensors:
                for name, source in tensors.items():
                    if name not in plan:
                        continue  # lm_head.weight in a tied checkpoint: the reference skips it
                    target, row = plan[name]
                    _place(model, params, target, row, source, device, dtype, file)
                    filled[target] = filled.get(target, 0) + source.shape[0]
                    done += 1
                    if progress:
                        progress(done, total)
        except (CorruptFile, SafetensorError, OSError, RuntimeError) as err:
            raise ModelLoadError(
                f"{file.name} is corrupt or unreadable ({str(err).splitlines()[0]}).",
                "Delete it and download the model again.",
            ) from None
    incomplete = [n for n, p in params.items() if filled.get(n, 0) != p.shape[0]]
    if incomplete:
        raise ModelLoadError(
            f"{path} is missing weights for {incomplete[0]}"
            f" ({len(incomplete)} tensors incomplete).",
            "Re-download the model.",
        )
    flash = (
        device.type == "cuda"
        and dtype in (torch.float16, torch.bfloat16)
        and torch.backends.cuda.is_flash_attention_available()
    )
    for layer in model.layers:
        layer.native_gqa = device.type != "mps"
        layer.matmul_attention = device.type == "cuda"
        layer.flash = flash
    if device.type == "cuda":
        # cuDNN attention builds a plan for each new prompt length: about 100 ms on an H100
        # (measured), paid on nearly every turn. Flash and memory-efficient SDPA need none.
        torch.backends.cuda.enable_cudnn_sdp(False)
    model.setup_rope(device, dtype)
    model.eval()
    return model


class _LibraryTensor:
    """A tensor read through the safetensors library (straight into CUDA memory there)."""

    def __init__(self, handle, name: str) -> None:
        self.handle, self.name = handle, name
        self.shape = tuple(handle.get_slice(name).get_shape())

    def read_into(self, dest: torch.Tensor) -> None:
        dest.copy_(self.handle.get_tensor(self.name))


@contextmanager
def _open_weights(file: Path, device: torch.device):
    if device.type == "cpu":
        with open_safetensors(file) as tensors:
            yield tensors
        return
    # MPS goes through the CPU; CUDA reads straight into device memory.
    where = str(device) if device.type == "cuda" else "cpu"
    with safe_open(str(file), framework="pt", device=where) as handle:
        yield {name: _LibraryTensor(handle, name) for name in handle.keys()}


def _place(
    model: nn.Module,
    params: dict[str, nn.Parameter],
    target: str,
    row: int,
    source: StoredTensor | _LibraryTensor,
    device: torch.device,
    dtype: torch.dtype,
    file: Path,
) -> None:
    param = params[target]
    if param.is_meta:
        # First piece of this parameter: allocate it once, for real, on the target device.
        param = nn.Parameter(
            torch.empty(param.shape, device=device, dtype=dtype), requires_grad=False
        )
        owner_name, _, attr = target.rpartition(".")
        setattr(model.get_submodule(owner_name), attr, param)
        params[target] = param
    rows = source.shape[0]
    if tuple(source.shape[1:]) != tuple(param.shape[1:]) or row + rows > param.shape[0]:
        raise ModelLoadError(
            f"{file.name}: tensor for {target} has shape {source.shape}, which does not fit"
            f" {tuple(param.shape)} from config.json.",
            "The weights and config.json belong to different models; re-download.",
        )
    source.read_into(param.data[row : row + rows])
