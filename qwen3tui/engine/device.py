"""Choose where the model runs and in which precision."""

from __future__ import annotations

import functools

import torch

from .errors import DeviceError

DTYPES = {
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "float32": torch.float32,
    "fp32": torch.float32,
}


def pick_device(name: str = "auto") -> torch.device:
    """`auto`: CUDA, then Apple MPS, then CPU. Explicit names are checked, not trusted."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise DeviceError(
            f"unknown device '{name}'.", "Use auto, cpu, cuda, cuda:N or mps."
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("CUDA was asked for but no CUDA GPU is usable.", "Use --device cpu.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"there is no {name} (this machine has {torch.cuda.device_count()} GPUs).",
                "Use --device cuda:0.",
            )
    elif device.type == "mps":
        if not _mps_available():
            raise DeviceError("MPS was asked for but is not available.", "Use --device cpu.")
    elif device.type != "cpu":
        raise DeviceError(f"unsupported device '{name}'.", "Use auto, cpu, cuda, cuda:N or mps.")
    return device


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto`: bf16 where the hardware does it well, else what does."""
    name = (name or "auto").strip().lower()
    if name != "auto":
        if name not in DTYPES:
            raise DeviceError(f"unknown dtype '{name}'.", "Use auto, bfloat16, float16 or float32.")
        return DTYPES[name]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        # bf16 on MPS needs macOS 14; fp16 everywhere else it runs.
        return torch.bfloat16 if _mps_bf16() else torch.float16
    # CPUs without native bf16 (AVX512-BF16/AMX) run bf16 matmuls far slower than fp32.
    return torch.bfloat16 if cpu_bf16_matmul() else torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def _mps_bf16() -> bool:
    try:
        torch.zeros(1, dtype=torch.bfloat16, device="mps")
        return True
    except (RuntimeError, TypeError):
        return False


@functools.cache
def cpu_bf16_matmul() -> bool:
    """oneDNN multiplies bf16 matrices with the CPU's bf16 instructions (AVX512-BF16, AMX).
    Elsewhere PyTorch's bf16 matmul is a generic loop, many times slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@functools.cache
def cpu_amx() -> bool:
    """The CPU has AMX bf16 tiles (Intel Xeon from Sapphire Rapids on), where oneDNN's bf16
    matmul runs several times faster than any AVX-512 code; False where unknown."""
    try:
        return bool(torch._C._cpu._get_cpu_capability().get("amx_bf16"))
    except (AttributeError, RuntimeError):
        return False
