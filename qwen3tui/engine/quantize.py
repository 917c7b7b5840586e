"""Weight-only int8 quantization, done at load time.

Decode at batch 1 reads every weight once per token, so halving the bytes (bf16 -> int8) nearly
doubles the speed ceiling. Each output channel gets its own scale (symmetric, max-abs / 127);
activations stay in the compute dtype.

On x86 CPUs the weights are packed for a small C kernel (int8_cpu_kernel) that streams them
at close to memory bandwidth; elsewhere, or without a C compiler, PyTorch's
`_weight_int8pack_mm` runs on the plain (out, in) matrix.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import int8_cpu_kernel
from .errors import EngineError
from .model import Qwen3, layer_projections
from .moe import ExpertList, SparseMoeBlock, moe_blocks

# The fused int8 kernels read each weight once, ideal for decode, but cost more per row than a
# bf16 matmul; past a few rows dequantize-then-matmul wins (with the C kernel: 8 rows take
# 2.9x the time of one, measured; dequantizing every layer alone costs about 4x one row).
FUSED_MAX_ROWS = int8_cpu_kernel.MAX_ROWS
# Prefill dequantizes at most this many bytes of weight at a time (one layer's largest
# projection fits), into one buffer kept for reuse: never a second copy of the model.
SCRATCH_BYTES = 64 << 20
QUANTIZE_ROWS = 4096  # a multiple of the kernel's 16-row blocks


class Int8Linear(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        w = weight.detach()
        self.out_features, self.in_features = w.shape
        self.kernel = None
        if w.device.type == "cpu" and int8_cpu_kernel.Int8Kernel.supports(
            self.in_features, w.dtype
        ):
            self.kernel = int8_cpu_kernel.load()
        q, scale = _quantize_rows(w, self.kernel)
        # (N/16, K, 16) for the kernel, which applies the scale (as stored) in fp32; (N, K)
        # for PyTorch's kernels.
        self.register_buffer("weight", q)
        self.register_buffer("scale", scale.to(w.dtype))
        if self.kernel is not None:
            self.register_buffer("scale32", self.scale.float(), persistent=False)
        # PyTorch's fused int8 kernel exists for CPU and MPS; elsewhere dequantize per call.
        self.fused = w.device.type in ("cpu", "mps")

    def int8_weight(self) -> torch.Tensor:
        """The quantized (out, in) matrix, whatever the storage layout."""
        if self.kernel is not None:
            return self.kernel.unpack(self.weight, self.out_features)
        return self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel is not None:
            if x.numel() == self.in_features:  # one row (decode): the shortest path
                return self.kernel.row(x, self.weight, self.scale32, self.out_features)
            flat = x.reshape(-1, self.in_features)
            return self._packed_forward(flat).view(*x.shape[:-1], self.out_features)
        flat = x.reshape(-1, self.in_features)
        if self.fused and flat.shape[0] <= FUSED_MAX_ROWS:
            out = torch._weight_int8pack_mm(flat, self.weight, self.scale.to(x.dtype))
            return out.view(*x.shape[:-1], self.out_features)
        # Prefill is compute-bound: one dequantized copy per call feeds the fast matmul.
        return F.linear(x, self.weight.to(x.dtype) * self.scale.to(x.dtype)[:, None])

    def _packed_forward(self, flat: torch.Tensor) -> torch.Tensor:
        flat = flat.contiguous()
        n = self.out_features
        if flat.shape[0] <= FUSED_MAX_ROWS:
            out = self.kernel.matmul(flat, self.weight, self.scale32)
            return out if out.shape[1] == n else out[:, :n]
        # Prefill: dequantize a slab of output rows at a time into a reused buffer, transposed
        # (K, rows) as the matmul reads it, and multiply.
        k = self.in_features
        step = max(16, SCRATCH_BYTES // (k * flat.element_size()) // 16 * 16)
        out = torch.empty((flat.shape[0], n), dtype=flat.dtype)
        with _scratch_lock:
            for n0 in range(0, n, step):
                n1 = min(n, n0 + step)
                width = -(-(n1 - n0) // 16) * 16
                wt = _scratch(k * width, flat.dtype).view(k, width)
                self.kernel.dequantize_t(self.weight, self.scale32, n0, n0 + width, wt)
                if n0 == 0 and n1 == n == width:
                    torch.matmul(flat, wt, out=out)
                else:
                    out[:, n0:n1] = torch.matmul(flat, wt[:, : n1 - n0])
        return out


def _quantize_rows(
    w: torch.Tensor, kernel: int8_cpu_kernel.Int8Kernel | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel symmetric int8, a slab of rows at a time (straight into the kernel's packed
    layout where there is one): the fp32 temporaries of a whole 150k-row output head would
    cost several GB at load."""
    n, k = w.shape
    rows = QUANTIZE_ROWS
    if kernel is not None:
        q = torch.empty((-(-n // 16), k, 16), dtype=torch.int8, device=w.device)
    else:
        q = torch.empty((n, k), dtype=torch.int8, device=w.device)
    scale = torch.empty(n, dtype=torch.float32, device=w.device)
    for r0 in range(0, n, rows):
        chunk = w[r0 : r0 + rows].float()
        s = chunk.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        qc = torch.round(chunk / s[:, None]).clamp(-127, 127).to(torch.int8)
        scale[r0 : r0 + rows] = s
        if kernel is None:
            q[r0 : r0 + rows] = qc
        else:
            b0 = r0 // 16
            q[b0 : b0 + -(-qc.shape[0] // 16)] = kernel.pack(qc)
    return q, scale


_scratch_lock = threading.Lock()
_scratch_buffers: dict[torch.dtype, torch.Tensor] = {}


def _scratch(numel: int, dtype: torch.dtype) -> torch.Tensor:
    # Reused: a fresh 50 MB allocation per projection costs more in page faults than the
    # dequantization itself.
    buf = _scratch_buffers.get(dtype)
    if buf is None or buf.numel() < numel:
        buf = torch.empty(numel, dtype=dtype)
        _scratch_buffers[dtype] = buf
    return buf[:numel]


def quantize_int8(model: Qwen3) -> Qwen3:
    """Replace every projection, expert and the output head with Int8Linear, one at a time
    (what loading with quantize="int8" already did stays as it is)."""
    for owner, name in layer_projections(model):
        if not isinstance(getattr(owner, name), Int8Linear):
            setattr(owner, name, Int8Linear(getattr(owner, name).weight))
    for block in moe_blocks(model):
        _quantize_experts(block, model.embed_tokens.weight.device)
    # The output head reads a vocab x hidden matrix every token: quantize it too. With tied
    # embeddings the bf16 table stays for lookups (one row per token, cheap to read).
    if not isinstance(model.lm_head, Int8Linear):
        model.lm_head = Int8Linear(model.output_weight())
    return model


def _quantize_experts(block: SparseMoeBlock, device: torch.device) -> None:
    if isinstance(block.experts, ExpertList):
        return
    if device.type == "cuda":
        # Per-expert int8 modules pick experts on the host; CUDA graphs cannot wait for it.
        raise EngineError(
            "--quantize int8 runs mixture-of-experts models on the CPU only.",
            "Leave out --quantize on the GPU, or add --device cpu.",
        )
    # Each expert like a dense projection (the small router stays as it is); the stacked
    # full-precision experts are freed as the list replaces them.
    block.experts = ExpertList.from_stacks(block.experts, Int8Linear)


def int8_as_loaded(model: Qwen3) -> Callable[[str], None]:
    """A hook for weights.load_model, called with each parameter's name once all of it is
    loaded: its projection (or expert stack, once both halves are in) is quantized at once,
    so the full-precision model never exists whole (peak: the int8 model and one layer)."""
    names = {id(m): n for n, m in model.named_modules()}
    projections = {
        f"{names[id(owner)]}.{name}.weight": (owner, name)
        for owner, name in layer_projections(model)
    }
    if model.lm_head is not None:
        projections["lm_head.weight"] = (model, "lm_head")
    blocks = {f"{names[id(b)]}.experts": b for b in moe_blocks(model)}
    halves: set[str] = set()

    def loaded(param: str) -> None:
        if param in projections:
            owner, name = projections.pop(param)
            setattr(owner, name, Int8Linear(getattr(owner, name).weight))
            return
        stack = param.rpartition(".")[0]
        if stack in blocks:
            if stack in halves:  # gate_up and down are both in
                block = blocks.pop(stack)
                _quantize_experts(block, block.experts.gate_up_proj.device)
            halves.add(stack)

    return loaded
