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
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from . import bf16_cpu_gemm, device, int4_cpu_kernel, int8_cpu_kernel
from .errors import EngineError
from .model import Qwen3, layer_projections
from .moe import ExpertList, SparseMoeBlock, moe_blocks

# CPUs with VNNI dot products (AVX-512 VNNI, AVX-VNNI) take every int8 prefill row through
# int8_cpu_kernel's gemm, int8 activations (see _amx_slabs); the constants up to INT8_GEMM_ROWS
# are for those without (AVX2 alone), where the products keep bf16 activations.
# The fused int8 kernels read each weight once, ideal for decode, but cost more per row than a
# bf16 matmul; past a few rows dequantize-then-matmul wins (with the C kernel: 8 rows take
# 2.9x the time of one, measured; dequantizing every layer alone costs about 4x one row).
FUSED_MAX_ROWS = int8_cpu_kernel.MAX_ROWS
# Where the slab is multiplied in fp32 (fp32 activations, or no oneDNN bf16: AVX2 machines),
# that matmul is slow beside the row kernels, so more rows go through them. Per Qwen3-1.7B
# layer on a 2-core AVX2 EPYC, bf16 activations: int8 in 8-row calls 33 ms against the slab's
# 100 at 16 rows, 128 against 113 at 64; int4's one-row kernel (int8 activations, integer dot
# products) won at every size tried, 16 ms against 104 at 16 rows and 155 against 241 at 256.
INT8_KERNEL_ROWS_FP32 = 32
# Past this many bf16 rows, where oneDNN has no bf16, the int8 rows go to the C bf16 GEMM as
# bf16 integers instead (Int8Linear._gemm_forward). Per Qwen3-1.7B layer on a 2-core AVX2
# EPYC: 32.3 ms against 35.4 in 8-row calls at 16 rows (27.0 against 21.0 at 9), 130.8 against
# 224.2 for the fp32 slab at 128.
INT8_GEMM_ROWS = 12
# On AMX CPUs, more prefill rows than this go through dequantized slabs (see _amx_slabs).
AMX_KERNEL_ROWS = 8
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
        dtype = slab_dtype(x.dtype) if x.device.type == "cpu" else x.dtype
        w = self.weight.to(dtype) * self.scale.to(dtype)[:, None]
        return F.linear(x.to(dtype), w).to(x.dtype)

    @property
    def row_width(self) -> int:
        """Values `row_call` writes: out_features rounded up to the kernel's 16-row blocks."""
        return self.weight.shape[0] * int8_cpu_kernel.BLOCK if self.kernel else self.out_features

    def row_call(self, x: torch.Tensor, y: torch.Tensor) -> Callable[[int], int] | None:
        """A decode step's product from x (in_features contiguous values) into y (row_width
        values), bound once for cpu_decode; None without the C kernel."""
        if self.kernel is None or x.dtype not in _KERNEL_DTYPES:
            return None
        return self.kernel.bind_row(x, self.weight, self.scale32, y)

    def _packed_forward(self, flat: torch.Tensor) -> torch.Tensor:
        flat = flat.contiguous()
        n, m = self.out_features, flat.shape[0]
        if self.kernel.gemm_rows and not _amx_slabs(m, flat.dtype):
            out = self.kernel.gemm(flat, self.weight, self.scale32)  # VNNI, int8 activations
            return out if out.shape[1] == n else out[:, :n]
        if m <= FUSED_MAX_ROWS:
            out = self.kernel.matmul(flat, self.weight, self.scale32)
            return out if out.shape[1] == n else out[:, :n]
        if flat.dtype == torch.bfloat16 and m > INT8_GEMM_ROWS:
            out = self._gemm_forward(flat)
            if out is not None:
                return out
        if slab_dtype(flat.dtype) == torch.float32 and m <= INT8_KERNEL_ROWS_FP32:
            return torch.cat(
                [
                    self._packed_forward(flat[r : r + FUSED_MAX_ROWS])
                    for r in range(0, m, FUSED_MAX_ROWS)
                ]
            )
        # Prefill: dequantize a slab of output rows at a time into a reused buffer, transposed
        # (K, rows) as the matmul reads it, and multiply.
        k, x = self.in_features, flat.to(slab_dtype(flat.dtype))
        out = torch.empty((x.shape[0], n), dtype=x.dtype)
        with _scratch_lock:
            for n0, n1, width in _slabs(n, k * x.element_size()):
                wt = _scratch(k * width, x.dtype).view(k, width)
                self.kernel.dequantize_t(self.weight, self.scale32, n0, n0 + width, wt)
                if n0 == 0 and n1 == n == width:
                    torch.matmul(x, wt, out=out)
                else:
                    out[:, n0:n1] = torch.matmul(x, wt[:, : n1 - n0])
        return out.to(flat.dtype)

    def _gemm_forward(self, flat: torch.Tensor) -> torch.Tensor | None:
        """Prefill where oneDNN has no bf16 (AVX2): slabs of the int8 rows as bf16 integers
        (exact) through the C bf16 GEMM, which multiplies each fp32 sum by its row's scale
        before the one rounding, as the decode kernel does; None where that GEMM is not used."""
        if slab_dtype(torch.bfloat16) != torch.float32:
            return None  # oneDNN's bf16 matmul on the bf16 slab is faster
        gemm = bf16_cpu_gemm.load()
        if gemm is None:
            return None
        n, k = self.out_features, self.in_features
        out = torch.empty((flat.shape[0], n), dtype=torch.bfloat16)
        with _scratch_lock:
            for n0, n1, width in _slabs(n, k * 2):
                slab = _scratch(width * k, torch.bfloat16).view(width, k)
                self.kernel.unpack_bf16(self.weight, n0 // 16, (n0 + width) // 16, slab)
                rows = slice(n0, n1)
                if not gemm.into(flat, slab[: n1 - n0], out[:, rows], self.scale32[rows]):
                    return None  # no scratch memory in the GEMM
        return out


def _slabs(n: int, row_bytes: int) -> Iterator[tuple[int, int, int]]:
    """The slabs a prefill dequantizes n weight rows of row_bytes each in: (first row, end
    row, rows rounded up to whole 16-row blocks), each at most SCRATCH_BYTES."""
    step = max(16, SCRATCH_BYTES // row_bytes // 16 * 16)
    for n0 in range(0, n, step):
        n1 = min(n, n0 + step)
        yield n0, n1, -(-(n1 - n0) // 16) * 16


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


def _quantize_experts(
    block: SparseMoeBlock,
    device: torch.device,
    make: Callable[[torch.Tensor], nn.Module] | None = None,
) -> None:
    make = make or Int8Linear
    if isinstance(block.experts, ExpertList):
        return
    if device.type == "cuda":
        # Per-expert quantized modules pick experts on the host; CUDA graphs cannot wait for it.
        kind = "int4" if make is Int4Linear else "int8"
        raise EngineError(
            f"--quantize {kind} runs mixture-of-experts models on the CPU only.",
            "Leave out --quantize on the GPU, or add --device cpu.",
        )
    # Each expert like a dense projection (the small router stays as it is); the stacked
    # full-precision experts are freed as the list replaces them.
    block.experts = ExpertList.from_stacks(block.experts, make)


def int8_as_loaded(model: Qwen3) -> Callable[[str], None]:
    """A hook for weights.load_model, called with each parameter's name once all of it is
    loaded: its projection (or expert stack, once both halves are in) is quantized at once,
    so the full-precision model never exists whole (peak: the int8 model and one layer)."""
    return _as_loaded(model, Int8Linear)


def int4_as_loaded(model: Qwen3) -> Callable[[str], None]:
    """int8_as_loaded for int4 (quantize="int4"): the same hook with Int4Linear."""
    return _as_loaded(model, Int4Linear)


def _as_loaded(model: Qwen3, make: Callable[[torch.Tensor], nn.Module]) -> Callable[[str], None]:
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
            setattr(owner, name, make(getattr(owner, name).weight))
            return
        stack = param.rpartition(".")[0]
        if stack in blocks:
            if stack in halves:  # gate_up and down are both in
                block = blocks.pop(stack)
                _quantize_experts(block, block.experts.gate_up_proj.device, make)
            halves.add(stack)

    return loaded


# -- int4 ------------------------------------------------------------------------------------

# Chosen by measurement on the Qwen3-1.7B-shaped checkpoint (benchmarks/RESULTS.md): at the
# same 4.5 bits per weight, symmetric groups of 32 beat asymmetric groups of 64 on error; groups
# of 64 (4.25 bits) decode 10-15% faster than 32 for about 13% more KL divergence, and only
# they reach 1.5x-1.6x int8 here. Asymmetric groups of 32 (5 bits) err least and decode slowest.
INT4_GROUP = 64
INT4_SYMMETRIC = True


class Int4Linear(nn.Module):
    """Weight-only int4: a 4-bit code per weight and a bf16 scale per group of `group` inputs
    per output row (symmetric: w = s * (q - 8)), or a scale and a minimum (w = s * q + m).

    Takes any dense float weight (bf16, fp16, fp32, or FP8 already scaled up by the loader).
    On x86 CPUs one row (decode) runs the C kernel of int4_cpu_kernel with int8 activations,
    and so do prefill's rows, 64 a call (each row as decode computes it), except on CPUs with
    AMX past AMX_KERNEL_ROWS rows: there a slab of dequantized rows at a time, in a reused
    buffer, feeds oneDNN's bf16 matmul. Without the kernel the same packed codes are
    dequantized by PyTorch: correct, slower.
    """

    def __init__(
        self, weight: torch.Tensor, group: int = INT4_GROUP, symmetric: bool = INT4_SYMMETRIC
    ) -> None:
        super().__init__()
        w = weight.detach()
        if group % 16:
            raise ValueError(f"int4 groups are a multiple of 16 inputs, not {group}")
        self.out_features, self.in_features = w.shape
        self.group = group
        self.kernel = int4_cpu_kernel.load() if w.device.type == "cpu" else None
        self.symmetric = symmetric
        # Codes with their scales (and minimums) in one buffer: see int4_cpu_kernel.pack.
        self.register_buffer("weight", _quantize_groups(w, group, symmetric, self.kernel))

    def groups(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The (out, padded in) codes 0..15, the (out, groups) bf16 scales and minimums (None
        when symmetric)."""
        return int4_cpu_kernel.unpack(self.weight, self.out_features, self.group)

    def int4_codes(self) -> torch.Tensor:
        """The (out, padded in) codes 0..15."""
        return self.groups()[0]

    def dequantized(self, n0: int = 0, n1: int | None = None) -> torch.Tensor:
        """Rows n0..n1 of the weight this layer computes with, in fp32 (padding inputs cut)."""
        n1 = self.out_features if n1 is None else n1
        b0, b1 = n0 // 16, -(-n1 // 16)
        codes, scale, mins = int4_cpu_kernel.unpack(self.weight[b0:b1], (b1 - b0) * 16, self.group)
        rows = slice(n0 - b0 * 16, n1 - b0 * 16)
        scale = scale[rows].float().repeat_interleave(self.group, 1)
        w = codes[rows].float() * scale
        if mins is None:
            w -= 8 * scale
        else:
            w += mins[rows].float().repeat_interleave(self.group, 1)
        return w[:, : self.in_features]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, k = self.out_features, self.in_features
        kernel_dtype = self.kernel is not None and x.dtype in _KERNEL_DTYPES
        if kernel_dtype and x.numel() == k:
            y = self.kernel.gemv(x, self.weight, self.group)
            return y if y.shape[-1] == n else y[..., :n]
        flat = x.reshape(-1, k)
        dtype = slab_dtype(x.dtype) if x.device.type == "cpu" else x.dtype
        if kernel_dtype and not _amx_slabs(len(flat), dtype):
            y = self.kernel.gemm(flat, self.weight, self.group)
            return (y if y.shape[-1] == n else y[..., :n]).reshape(*x.shape[:-1], n)
        flat = flat.to(dtype)
        out = torch.empty((flat.shape[0], n), dtype=flat.dtype, device=x.device)
        # A slab of dequantized rows at a time: never a second copy of the whole weight.
        kp = self.weight.shape[1] * 2 * self.group
        for n0, n1, _ in _slabs(n, kp * flat.element_size()):
            self._slab_matmul(flat, n0, n1, out)
        return out.to(x.dtype).view(*x.shape[:-1], n)

    @property
    def row_width(self) -> int:
        """Values `row_call` writes: out_features rounded up to the kernel's 16-row blocks."""
        return self.weight.shape[0] * int4_cpu_kernel.BLOCK

    def row_call(self, x: torch.Tensor, y: torch.Tensor) -> Callable[[int], int] | None:
        """Int8Linear.row_call for int4."""
        if self.kernel is None or x.dtype not in _KERNEL_DTYPES:
            return None
        return self.kernel.bind_gemv(x, self.weight, self.group, y)

    def _slab_matmul(self, flat: torch.Tensor, n0: int, n1: int, out: torch.Tensor) -> None:
        """out[:, n0:n1] = flat @ (dequantized rows n0..n1)^T."""
        if self.kernel is None or flat.device.type != "cpu" or flat.dtype not in _KERNEL_DTYPES:
            out[:, n0:n1] = flat @ self.dequantized(n0, n1).to(flat.dtype).T
            return
        kp, width = self.weight.shape[1] * 2 * self.group, -(-(n1 - n0) // 16) * 16
        with _scratch_lock:
            wt = _scratch(kp * width, flat.dtype).view(kp, width)
            self.kernel.dequantize_t(self.weight, self.group, n0, n0 + width, wt)
            wt = wt[: self.in_features]
            if n0 == 0 and n1 == out.shape[1] == width:
                torch.matmul(flat, wt, out=out)  # the whole weight in one slab: no copy
            else:
                out[:, n0:n1] = torch.matmul(flat, wt[:, : n1 - n0])


_KERNEL_DTYPES = (torch.bfloat16, torch.float32)


def _amx_slabs(rows: int, dtype: torch.dtype) -> bool:
    """Whether int8/int4 prefill rows go through dequantized slabs and oneDNN rather than the
    kernels' integer dot products (VNNI, int8 activations). Those beat oneDNN's AVX512-BF16
    matmul on the slabs at every size measured (Qwen3-1.7B layers, 2-core Zen 4: int4 4.4
    against 17.0 ms at 16 rows, 21 against 44 at 128; int8 3.2 against 23.3 at 16, 21
    against 48 at 128), and an fp32 slab (no oneDNN bf16, or an fp32 model) is slower still;
    only AMX's bf16 tiles should beat them (not measured: a few rows still read the weights
    once through the kernels there)."""
    return dtype == torch.bfloat16 and device.cpu_amx() and rows > AMX_KERNEL_ROWS


def slab_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a CPU prefill multiplies a dequantized slab in. Without oneDNN bf16 (AVX2
    machines) PyTorch's bf16 matmul is a generic loop that ran at 0.3 GFLOP/s over the
    transposed slab (16 prompt tokens took minutes on Qwen3-1.7B); fp32 runs at 30-140 there.
    The sums were fp32 already: only the bf16 rounding of the output remains, as before."""
    if dtype == torch.bfloat16 and not device.cpu_bf16_matmul():
        return torch.float32
    return dtype


def _quantize_groups(
    w: torch.Tensor,
    group: int,
    symmetric: bool,
    kernel: int4_cpu_kernel.Int4Kernel | None = None,
) -> torch.Tensor:
    """The packed weight (codes, bf16 scales and minimums: int4_cpu_kernel.pack), a slab of
    rows at a time (fp32 temporaries of a whole output head would cost GBs). Inputs are padded
    with zeros to whole units of two groups.

    Symmetric groups map the value of largest magnitude to -8 (all 16 codes used, as
    llama.cpp's Q4_0); asymmetric ones map [min, max] onto 0..15. Codes are computed from the
    bf16-rounded scale and minimum, so stored numbers and codes agree."""
    n, k = w.shape
    kp = int4_cpu_kernel.padded_k(k, group)
    nb, groups = -(-n // 16), kp // group
    unit = int4_cpu_kernel.unit_bytes(group, symmetric)
    packed = torch.empty((nb, kp // (2 * group), unit), dtype=torch.uint8, device=w.device)
    if kernel is not None and w.dtype in _KERNEL_DTYPES:
        # The same numbers in one pass of C (five times faster: seconds at load for 1.7B).
        kernel.quantize(w.contiguous(), group, symmetric, packed)
        return packed
    for r0 in range(0, n, QUANTIZE_ROWS):
        chunk = w[r0 : r0 + QUANTIZE_ROWS].float()
        if kp != k:
            chunk = F.pad(chunk, (0, kp - k))
        g = chunk.view(chunk.shape[0], groups, group)
        lo = None
        if symmetric:
            idx = g.abs().argmax(dim=2, keepdim=True)
            scale = (torch.gather(g, 2, idx) / -8).bfloat16().float()
            q = torch.round(g / _nonzero(scale)) + 8
        else:
            lo, hi = g.amin(dim=2, keepdim=True), g.amax(dim=2, keepdim=True)
            scale = ((hi - lo) / 15).bfloat16().float()
            lo = lo.bfloat16().float()
            q = torch.round((g - lo) / _nonzero(scale))
        q = q.clamp(0, 15).to(torch.uint8).view(chunk.shape[0], kp)
        b0, b1 = r0 // 16, r0 // 16 + -(-chunk.shape[0] // 16)
        packed[b0:b1] = int4_cpu_kernel.pack(
            q, scale.squeeze(2), None if lo is None else lo.squeeze(2), group
        )
    return packed


def _nonzero(scale: torch.Tensor) -> torch.Tensor:
    # An all-zero group has scale 0: any code decodes to 0 there (symmetric: code 8 is chosen).
    return torch.where(scale == 0, torch.ones_like(scale), scale)


def quantize_int4(model: Qwen3, group: int = INT4_GROUP, symmetric: bool = INT4_SYMMETRIC) -> Qwen3:
    """Replace every projection, expert and the output head with Int4Linear, one at a time
    (what loading with quantize="int4" already did stays as it is)."""

    def make(weight: torch.Tensor) -> Int4Linear:
        return Int4Linear(weight, group, symmetric)

    for owner, name in layer_projections(model):
        if not isinstance(getattr(owner, name), Int4Linear):
            setattr(owner, name, make(getattr(owner, name).weight))
    for block in moe_blocks(model):
        _quantize_experts(block, model.embed_tokens.weight.device, make)
    # The head is a fifth of a small model's weights; as int8 it would keep int4 decode from
    # reading half of int8's bytes. With tied embeddings the bf16 table stays for lookups.
    if not isinstance(model.lm_head, Int4Linear):
        model.lm_head = make(model.output_weight())
    return model
