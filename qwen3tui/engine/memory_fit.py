"""Will a model fit? An estimate from config.json, checked before any weight is read.

A model too big for the machine would otherwise be found out minutes into loading, by the
kernel's out-of-memory killer or a CUDA error; refusing it first, with the numbers, lets the
user pick a smaller model, `--quantize`, or a shorter `--context`. Torch-free: the model list
and the TUI use the same estimate; only `available_bytes` on CUDA asks torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .config import Qwen3Config
from .errors import EngineError

# What runs beside the weights and the KV cache: activations of a prefill chunk, the sampler,
# allocator slack. A rough floor, so that a model that fits only on paper is not started.
RUNTIME_OVERHEAD_BYTES = 256 << 20
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# Bytes per quantized weight: int8 codes (one scale per row: negligible); int4 codes in groups
# of 32 with one bf16 scale each.
QUANTIZED_BYTES = {"int8": 1.0, "int4": 0.5 + 2 / 32}


class ModelTooLargeError(EngineError):
    """The model's estimated memory exceeds what is free where it would run."""


@dataclass(frozen=True)
class MemoryNeed:
    weights: int
    kv_cache: int
    overhead: int = RUNTIME_OVERHEAD_BYTES

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.overhead


def estimate(
    config: Qwen3Config, dtype: str, context_length: int, quantize: str | None = None
) -> MemoryNeed:
    """Bytes the loaded model takes: weights in `dtype` (or quantized), and the KV cache for
    `context_length` tokens. FP8 checkpoints are dequantized at load, so `dtype` counts."""
    width = DTYPE_BYTES[dtype]
    embedding = config.vocab_size * config.hidden_size
    if quantize is None:
        weights = config.num_parameters * width
    else:
        # The embedding table stays in `dtype` for lookups; the output head and every
        # projection are quantized (a tied head gets its own quantized copy).
        body = config.num_parameters - embedding * (1 if config.tie_word_embeddings else 2)
        weights = int(embedding * width + (embedding + body) * QUANTIZED_BYTES[quantize])
    per_token = 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim
    return MemoryNeed(weights=weights, kv_cache=per_token * context_length * width)


def free_ram_bytes() -> int | None:
    """Memory the system can give without swapping: MemAvailable, else free pages."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None  # not known here (macOS): the check is skipped


def available_bytes(device: str) -> int | None:
    """Free memory on `device` ("cpu", "cuda", "cuda:1", "mps"); None when it cannot be told."""
    if device.startswith("cuda"):
        import torch  # only here: the rest of this module is torch-free

        index = torch.device(device).index
        index = torch.cuda.current_device() if index is None else index
        free, _total = torch.cuda.mem_get_info(index)
        # Memory this process's allocator holds but does not use is free for us too.
        return free + torch.cuda.memory_reserved(index) - torch.cuda.memory_allocated(index)
    return free_ram_bytes()  # CPU, and MPS's unified memory


def gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_fits(need: MemoryNeed, available: int | None, device: str, model: str) -> None:
    """Raise ModelTooLargeError (one line, with the numbers) when `need` exceeds `available`."""
    if available is None or need.total <= available:
        return
    where = "free RAM" if not device.startswith("cuda") else f"free on {device}"
    raise ModelTooLargeError(
        f"{model} does not fit: it needs about {gib(need.total)} (weights {gib(need.weights)},"
        f" KV cache {gib(need.kv_cache)}) but only {gib(available)} is {where}.",
        "Try --quantize int8 or int4, a smaller --context, or a smaller model.",
    )
