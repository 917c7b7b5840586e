"""Load Hugging Face safetensors weights straight into the model, on its device and dtype.

Before anything is allocated, every file's header is read and checked against config.json:
each tensor the config calls for must be there once, with the shape the config implies and a
usable dtype (FP8 weights with their block scales). Only then is the model built on the meta
device (no memory), and each parameter allocated once on the target device and filled tensor
by tensor from the files, so the weights never exist twice. A damaged or hostile checkpoint is
a one-line error naming the tensor and the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from .config import Qwen3Config
from .errors import ModelLoadError
from .fp8 import FP8_DTYPES, Fp8Weight, Source, scale_name, scale_shape
from .model import Qwen3
from .safetensors_reader import CorruptFile, open_safetensors, read_header

REDOWNLOAD = "Delete it and download the model again."
MISMATCH = "The weights and config.json belong to different models; re-download."
LAYER_NAME = re.compile(r"model\.layers\.(\d+)\.")
EXPERT_NAME = re.compile(r"model\.layers\.\d+\.mlp\.experts\.(\d+)\.")


@dataclass(frozen=True)
class Slot:
    """Where one checkpoint tensor goes in our model."""

    target: str  # our parameter
    shape: tuple[int, ...]  # the tensor's shape, as config.json implies it
    expert: int | None = None  # index into a stacked [experts, ...] parameter
    row: int = 0  # first row inside the parameter (fused q/k/v, gate/up)


def expected_tensors(config: Qwen3Config) -> dict[str, Slot]:
    """Every tensor a checkpoint of `config` holds, by its hub name."""
    h, hd = config.hidden_size, config.head_dim
    q, kv = config.num_attention_heads * hd, config.num_key_value_heads * hd
    plan: dict[str, Slot] = {
        "model.embed_tokens.weight": Slot("embed_tokens.weight", (config.vocab_size, h)),
        "model.norm.weight": Slot("norm.weight", (h,)),
    }
    for i in range(config.num_hidden_layers):
        hub, ours = f"model.layers.{i}.", f"layers.{i}."
        qkv, out = ours + "inputs.qkv_proj.weight", ours + "output."
        plan.update(
            {
                hub + "input_layernorm.weight": Slot(ours + "inputs.norm.weight", (h,)),
                hub + "self_attn.q_proj.weight": Slot(qkv, (q, h)),
                hub + "self_attn.k_proj.weight": Slot(qkv, (kv, h), row=q),
                hub + "self_attn.v_proj.weight": Slot(qkv, (kv, h), row=q + kv),
                hub + "self_attn.q_norm.weight": Slot(ours + "inputs.q_norm.weight", (hd,)),
                hub + "self_attn.k_norm.weight": Slot(ours + "inputs.k_norm.weight", (hd,)),
                hub + "self_attn.o_proj.weight": Slot(out + "o_proj.weight", (h, q)),
                hub + "post_attention_layernorm.weight": Slot(out + "norm.weight", (h,)),
            }
        )
        if config.is_sparse_layer(i):
            plan.update(_expert_tensors(config, hub + "mlp.", out + "moe."))
        else:
            inter = config.intermediate_size
            plan.update(
                {
                    hub + "mlp.gate_proj.weight": Slot(out + "gate_up_proj.weight", (inter, h)),
                    hub + "mlp.up_proj.weight": Slot(
                        out + "gate_up_proj.weight", (inter, h), row=inter
                    ),
                    hub + "mlp.down_proj.weight": Slot(out + "down_proj.weight", (h, inter)),
                }
            )
    if not config.tie_word_embeddings:
        plan["lm_head.weight"] = Slot("lm_head.weight", (config.vocab_size, h))
    return plan


def _expert_tensors(config: Qwen3Config, hub: str, ours: str) -> dict[str, Slot]:
    # Qwen publishes one tensor per expert and projection; ours stacks them (see moe.py).
    h, inter = config.hidden_size, config.moe_intermediate_size
    gate_up, down = ours + "experts.gate_up_proj", ours + "experts.down_proj"
    plan = {hub + "gate.weight": Slot(ours + "router.weight", (config.num_experts, h))}
    for e in range(config.num_experts):
        p = f"{hub}experts.{e}."
        plan[p + "gate_proj.weight"] = Slot(gate_up, (inter, h), expert=e)
        plan[p + "up_proj.weight"] = Slot(gate_up, (inter, h), expert=e, row=inter)
        plan[p + "down_proj.weight"] = Slot(down, (h, inter), expert=e)
    return plan


def weight_files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.exists():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
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


Header = dict[str, tuple[Path, torch.dtype, tuple[int, ...]]]


def read_headers(files: list[Path]) -> Header:
    """Name -> (file, dtype, shape) of every tensor in the checkpoint, from the headers only."""
    found: Header = {}
    for file in files:
        try:
            header = read_header(file)
        except (CorruptFile, OSError) as err:
            raise ModelLoadError(
                f"{file.name} is corrupt or unreadable ({str(err).splitlines()[0]}).", REDOWNLOAD
            ) from None
        for name, (dtype, shape) in header.items():
            if name in found:
                raise ModelLoadError(
                    f"{name} is stored twice ({found[name][0].name} and {file.name}).", REDOWNLOAD
                )
            found[name] = (file, dtype, shape)
    return found


def check_checkpoint(headers: Header, config: Qwen3Config, path: Path) -> dict[str, Slot]:
    """The placement plan, once every tensor config.json calls for is in the files with the
    right shape and dtype. Cheap checks come first: a config claiming 100,000 layers (or a
    billion experts) fails before a plan of a million entries is built."""
    layers = 1 + max((int(m[1]) for n in headers if (m := LAYER_NAME.match(n))), default=-1)
    if layers != config.num_hidden_layers:
        files = sorted({f.name for f, _, _ in headers.values()})
        raise ModelLoadError(
            f"{path / 'config.json'}: num_hidden_layers is {config.num_hidden_layers}, but the"
            f" weights ({', '.join(files[:2])}{', ...' if len(files) > 2 else ''}) hold"
            f" {layers} layers.",
            MISMATCH,
        )
    if config.is_moe:
        experts = 1 + max((int(m[1]) for n in headers if (m := EXPERT_NAME.match(n))), default=-1)
        if experts != config.num_experts:
            raise ModelLoadError(
                f"{path / 'config.json'}: num_experts is {config.num_experts}, but the weights"
                f" hold {experts} experts per layer.",
                MISMATCH,
            )
    plan = expected_tensors(config)
    missing = [n for n in plan if n not in headers]
    if missing:
        raise ModelLoadError(
            f"{path} is missing weights for {missing[0]}, which config.json calls for"
            f" ({len(missing)} tensors missing).",
            MISMATCH,
        )
    for name, slot in plan.items():
        file, dtype, shape = headers[name]
        if shape != slot.shape:
            raise ModelLoadError(
                f"{file.name}: tensor {name} has shape {_shape(shape)}, which does not fit"
                f" {_shape(slot.shape)} from config.json.",
                MISMATCH,
            )
        if dtype in FP8_DTYPES:
            _check_fp8(headers, config, name, file, shape)
        elif not dtype.is_floating_point or dtype.itemsize < 2:
            raise ModelLoadError(
                f"{file.name}: tensor {name} is {str(dtype).removeprefix('torch.')}, not a"
                " float32, float16 or bfloat16 weight.",
                MISMATCH,
            )
    return plan


def _check_fp8(headers: Header, config: Qwen3Config, name: str, file: Path, shape) -> None:
    if config.fp8_block is None:
        raise ModelLoadError(
            f"{file.name}: tensor {name} is float8, but config.json declares no FP8"
            " quantization_config.",
            REDOWNLOAD,
        )
    scale = scale_name(name)
    if scale not in headers:
        raise ModelLoadError(
            f"{file.name}: FP8 tensor {name} has no block scales ({scale} is missing).",
            REDOWNLOAD,
        )
    wanted = scale_shape(shape, config.fp8_block)
    scale_file, _, got = headers[scale]
    if got != wanted:
        bn, bk = config.fp8_block
        raise ModelLoadError(
            f"{scale_file.name}: {scale} has shape {_shape(got)}, but {name} {_shape(shape)}"
            f" in {bn}x{bk} blocks needs {_shape(wanted)}.",
            REDOWNLOAD,
        )


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def load_model(
    path: Path,
    config: Qwen3Config,
    device: torch.device,
    dtype: torch.dtype,
    max_positions: int,
    progress: Callable[[int, int], None] | None = None,
    quantize: str | None = None,
    keep_fp8: bool = False,
) -> Qwen3:
    """The model of `config` with the checkpoint's weights, in `dtype` on `device`; with
    quantize="int8" (int4, fp8) each projection is quantized as soon as it is loaded. With
    keep_fp8, an FP8 checkpoint's layer projections stay FP8 (fp8_linear.Fp8Linear) instead of
    being dequantized into `dtype`."""
    files = weight_files(path)
    headers = read_headers(files)
    plan = check_checkpoint(headers, config, path)
    with torch.device("meta"):
        model = Qwen3(config, max_positions)
    params = dict(model.named_parameters())
    unloaded = {name: p.numel() for name, p in params.items()}  # elements still to come
    # int8/int4 quantize from dequantized weights, so they keep nothing in FP8.
    keep_fp8 = keep_fp8 and quantize in (None, "fp8")
    fp8_kept = _fp8_targets(plan, headers, config) if keep_fp8 else set()
    loaded = None
    if quantize in ("int8", "int4"):  # each projection quantized once its weights are in
        from .quantize import int4_as_loaded, int8_as_loaded

        loaded = (int8_as_loaded if quantize == "int8" else int4_as_loaded)(model)
    elif quantize == "fp8":
        from .fp8_linear import fp8_as_loaded

        loaded = fp8_as_loaded(model)
    total, done = len(plan), 0
    with ExitStack() as stack:
        opened = {}
        for file in files:
            try:
                opened[file] = stack.enter_context(_open_weights(file, device))
            except (CorruptFile, SafetensorError, OSError) as err:
                raise _corrupt(file, err) from None
        for name, slot in plan.items():
            file = headers[name][0]
            try:
                source = _source(name, headers, opened, config)
                if slot.target in fp8_kept:
                    dest, finite = _place_fp8(model, slot, source, device)
                else:
                    dest = _place(model, params, slot, source, device, dtype)
                    lo, hi = torch.aminmax(dest)
                    finite = bool(torch.isfinite(lo) and torch.isfinite(hi))
            except (CorruptFile, SafetensorError, OSError, RuntimeError) as err:
                raise _corrupt(file, err) from None
            if not finite:
                raise _not_finite(file, name, headers[name][1], dtype)
            unloaded[slot.target] -= dest.numel()
            if loaded is not None and not unloaded[slot.target]:
                loaded(slot.target)
                del params[slot.target]  # the full-precision copy goes with its module
            done += 1
            if progress:
                progress(done, total)
    unfilled = [n for n, count in unloaded.items() if count]
    if unfilled:  # the plan covers every parameter; this guards the plan itself
        raise ModelLoadError(f"{path} left {unfilled[0]} unfilled.", "Re-download the model.")
    if quantize in ("int8", "int4"):
        from .quantize import quantize_int4, quantize_int8

        # What no single tensor completes: a tied output head.
        (quantize_int8 if quantize == "int8" else quantize_int4)(model)
    return prepare_for_device(model, device, dtype)


def prepare_for_device(model: Qwen3, device: torch.device, dtype: torch.dtype) -> Qwen3:
    """Per-device attention choices and RoPE tables for a model whose weights are in place
    (here from files; benchmarks fill random ones straight on the device)."""
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


# Layer projections an FP8 checkpoint may keep in FP8: what the decode kernels read.
FP8_PROJECTIONS = ("qkv_proj.weight", "o_proj.weight", "gate_up_proj.weight", "down_proj.weight")


def _fp8_targets(plan: dict[str, Slot], headers: Header, config: Qwen3Config) -> set[str]:
    """Our projections whose every piece is stored in FP8 and starts on a block boundary, so
    the pieces' scale grids stack into one (q/k/v, gate/up). Others are dequantized at load;
    so are mixture-of-experts models, whose layers have no FP8 path."""
    if config.fp8_block is None or config.is_moe:
        return set()
    bn = config.fp8_block[0]
    keep: dict[str, bool] = {}
    for name, slot in plan.items():
        if slot.target.endswith(FP8_PROJECTIONS):
            ok = headers[name][1] in FP8_DTYPES and slot.row % bn == 0
            keep[slot.target] = keep.get(slot.target, True) and ok
    return {target for target, ok in keep.items() if ok}


def _place_fp8(
    model: nn.Module, slot: Slot, source: Fp8Weight, device: torch.device
) -> tuple[torch.Tensor, bool]:
    """Fill the rows of slot's Fp8Linear (made on its first piece) with the stored values
    and scales, untouched; returns those values and whether they and the scales are finite."""
    from .fp8_linear import Fp8Linear

    owner_name, _, attr = slot.target.removesuffix(".weight").rpartition(".")
    owner = model.get_submodule(owner_name)
    module = getattr(owner, attr)
    if not isinstance(module, Fp8Linear):
        out_features, in_features = module.weight.shape
        module = Fp8Linear.empty(out_features, in_features, source.block, device)
        setattr(owner, attr, module)
    bn = source.block[0]
    values = module.weight[slot.row : slot.row + slot.shape[0]]
    scales = module.scale[slot.row // bn : slot.row // bn + source.scales.shape[0]]
    source.values.read_into(values)
    source.scales.read_into(scales)
    # float8_e4m3fn has no infinities; NaN is every bit but the sign set.
    nan = (values.view(torch.uint8) & 0x7F) == 0x7F
    finite = bool(torch.isfinite(scales).all()) and not bool(nan.any())
    return values, finite


def _not_finite(file: Path, name: str, stored: torch.dtype, dtype: torch.dtype) -> ModelLoadError:
    if dtype == torch.float16 and stored not in (torch.float16, *FP8_DTYPES):
        # Finite bf16/fp32 values past 65504 become infinite in float16.
        return ModelLoadError(
            f"{file.name}: tensor {name} has values too large for float16.",
            "Use --dtype bfloat16 or float32.",
        )
    return ModelLoadError(f"{file.name}: tensor {name} holds NaN or infinite values.", REDOWNLOAD)


def _corrupt(file: Path, err: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"{file.name} is corrupt or unreadable ({str(err).splitlines()[0]}).", REDOWNLOAD
    )


def _source(name: str, headers: Header, opened: dict, config: Qwen3Config) -> Source:
    """What fills the tensor `name`: its stored data, or for FP8 its values and block scales
    (dequantized by `read_into`, or placed as they are by `_place_fp8`)."""
    file, dtype, _ = headers[name]
    stored = opened[file][name]
    if dtype not in FP8_DTYPES:
        return stored
    scale = scale_name(name)
    return Fp8Weight(stored, opened[headers[scale][0]][scale], config.fp8_block)


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
    slot: Slot,
    source: Source,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Fill the part of slot's parameter that the tensor covers; returns that part."""
    param = params[slot.target]
    if param.is_meta:
        # First piece of this parameter: allocate it once, for real, on the target device.
        param = nn.Parameter(
            torch.empty(param.shape, device=device, dtype=dtype), requires_grad=False
        )
        owner_name, _, attr = slot.target.rpartition(".")
        setattr(model.get_submodule(owner_name), attr, param)
        params[slot.target] = param
    dest = param.data if slot.expert is None else param.data[slot.expert]
    dest = dest[slot.row : slot.row + slot.shape[0]]
    source.read_into(dest)
    return dest
