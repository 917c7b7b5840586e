"""Qwen3's mixture-of-experts block (`qwen3_moe`: Qwen3-30B-A3B, Qwen3-235B-A22B).

A router scores every expert for each token (softmax in fp32), keeps the top k, optionally
renormalises their weights to sum to one (`norm_topk_prob`), and the token's output is the
weighted sum of those k SwiGLU experts. The experts of a layer are stacked at load into one
[experts, 2 * inter, hidden] and one [experts, hidden, inter] tensor (the loader writes each
hub tensor into its slice: one copy of the weights), so a step can pick experts by index.

How the routed experts run depends on where the routing lives:
- on the host (CPU, and CUDA outside graph capture): the tokens are grouped by expert and each
  expert that has tokens multiplies them, reading only those experts' weights;
- on a CUDA device, without reading it back (decode steps and prefill chunks are replayed from
  CUDA graphs): PyTorch's grouped matmul with the group ends as device offsets (bf16, Ampere
  and later), which skips experts without tokens; without it, one decoding token's k experts
  are gathered by device index into a batched matmul, and a prefill chunk runs every expert
  with zero weight for the unrouted tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .config import Qwen3Config


class Router(nn.Module):
    def __init__(self, config: Qwen3Config) -> None:
        super().__init__()
        self.top_k = config.num_experts_per_tok
        self.normalize = config.norm_topk_prob
        self.weight = nn.Parameter(torch.empty(config.num_experts, config.hidden_size))
        # x86 CPUs (set at load, cpu_linear.route_with_kernel): the bf16 C kernel's product of
        # one row, for a decode step's routing; F.linear otherwise.
        self.gemv: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (n, hidden) -> the k routing weights (n, k) in x's dtype and expert ids (n, k)."""
        if self.gemv is not None and x.shape[0] == 1 and x.dtype == self.weight.dtype:
            logits = self.gemv(x.contiguous(), self.weight)
        else:
            logits = F.linear(x, self.weight)
        probs = torch.softmax(logits, dim=-1, dtype=torch.float32)
        weights, ids = torch.topk(probs, self.top_k, dim=-1)
        if self.normalize:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return weights.to(logits.dtype), ids


class Experts(nn.Module):
    """Every expert of a layer, stacked: expert e is gate_up_proj[e] and down_proj[e]."""

    # Experts can be picked by device index (CUDA graphs); a per-expert list cannot.
    stacked = True

    def __init__(self, config: Qwen3Config) -> None:
        super().__init__()
        e, h, inter = config.num_experts, config.hidden_size, config.moe_intermediate_size
        self.num_experts = e
        self.gate_up_proj = nn.Parameter(torch.empty(e, 2 * inter, h))
        self.down_proj = nn.Parameter(torch.empty(e, h, inter))

    def expert(self, e: int, x: torch.Tensor) -> torch.Tensor:
        """Expert `e` applied to the rows x (n, hidden)."""
        gate, up = F.linear(x, self.gate_up_proj[e]).chunk(2, dim=-1)
        return F.linear(F.silu(gate) * up, self.down_proj[e])


class ExpertList(nn.Module):
    """Experts as one (gate_up, down) pair of projection modules each: what a load-time
    rewrite such as int8 quantization makes of an Experts stack, one expert at a time."""

    stacked = False

    def __init__(self, pairs: list[tuple[nn.Module, nn.Module]]) -> None:
        super().__init__()
        self.num_experts = len(pairs)
        self.gate_up = nn.ModuleList(g for g, _ in pairs)
        self.down = nn.ModuleList(d for _, d in pairs)

    @classmethod
    def from_stacks(cls, experts: Experts, make: Callable[[torch.Tensor], nn.Module]) -> ExpertList:
        pairs = []
        for e in range(experts.num_experts):
            pairs.append((make(experts.gate_up_proj[e]), make(experts.down_proj[e])))
        return cls(pairs)

    def expert(self, e: int, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up[e](x).chunk(2, dim=-1)
        return self.down[e](F.silu(gate) * up)


class SparseMoeBlock(nn.Module):
    def __init__(self, config: Qwen3Config) -> None:
        super().__init__()
        self.router = Router(config)
        self.experts: Experts | ExpertList = Experts(config)
        # Whether the routing stays on the device (no host read); None: on CUDA. Tests set it
        # to run CUDA's paths on the CPU.
        self.device_routing: bool | None = None
        # How one decoding token reaches its experts on the device: "grouped" (a grouped
        # matmul; where supported), "index" (the k experts gathered, then a batched matmul),
        # "auto": grouped where supported. benchmarks/bench_moe.py measures both.
        self.decode_path = "auto"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (b, t, hidden), already normed -> the weighted sum of each token's experts."""
        flat = x.reshape(-1, x.shape[-1])
        weights, ids = self.router(flat)
        on_device = self.device_routing
        if on_device is None:
            on_device = x.device.type == "cuda"
        one = flat.shape[0] == 1
        if not (on_device and self.experts.stacked):
            out = routed_on_host(self.experts, flat, weights, ids)
        elif one and self.decode_path == "index":
            out = routed_by_index(self.experts, flat, weights[0], ids[0])
        elif grouped_mm_supported(flat):
            out = routed_grouped(self.experts, flat, weights, ids)
        elif one:
            out = routed_by_index(self.experts, flat, weights[0], ids[0])
        elif flat.is_cuda and torch.cuda.is_current_stream_capturing():
            out = routed_densely(self.experts, flat, weights, ids)
        else:
            out = routed_on_host(self.experts, flat, weights, ids)
        return out.view(x.shape)


def routed_on_host(
    experts: Experts | ExpertList, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor
) -> torch.Tensor:
    """Tokens grouped by expert, each expert with tokens run once on its rows: only the routed
    experts' weights are read. Experts are summed in ascending order, as the reference does."""
    k = ids.shape[1]
    flat_ids = ids.flatten()
    order = flat_ids.argsort(stable=True)
    counts = torch.bincount(flat_ids, minlength=experts.num_experts).tolist()
    flat_weights = weights.flatten()
    out = torch.zeros_like(x)
    start = 0
    for e, count in enumerate(counts):
        if not count:
            continue
        slots = order[start : start + count]
        start += count
        tokens = slots // k
        y = experts.expert(e, x[tokens]) * flat_weights[slots, None]
        # index_put_ rather than index_add_: the same sum, but index_add_ on the CPU in bf16
        # took 3.7 ms for one row (measured), more than the expert itself.
        out.index_put_((tokens,), y.to(out.dtype), accumulate=True)
    return out


def routed_by_index(
    experts: Experts, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor
) -> torch.Tensor:
    """One token (1, hidden) through its k experts `ids` (k,) on the device: no host read.
    The k experts' weights are gathered into one batch (a copy per step, in the CUDA graph's
    memory), which the grouped matmul avoids where it exists."""
    k = ids.shape[0]
    gate_up = torch.bmm(experts.gate_up_proj.index_select(0, ids), x.expand(k, -1)[:, :, None])
    gate, up = gate_up[:, :, 0].chunk(2, dim=-1)
    hidden = F.silu(gate) * up
    down = torch.bmm(experts.down_proj.index_select(0, ids), hidden[:, :, None])[:, :, 0]
    return (down * weights[:, None]).sum(0, keepdim=True)


def grouped_mm_supported(x: torch.Tensor) -> bool:
    """Whether PyTorch's grouped matmul runs here from device offsets (no host read): CUDA in
    bf16, Ampere and later (Hopper only before torch 2.9); elsewhere its fallback reads the
    offsets back to the host."""
    if x.device.type != "cuda" or x.dtype != torch.bfloat16:
        return False
    major = torch.cuda.get_device_capability(x.device)[0]
    return major >= 8 if hasattr(F, "grouped_mm") else major == 9 and hasattr(torch, "_grouped_mm")


def _grouped_mm(x: torch.Tensor, weights: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """x (rows, k) @ weights[g] (k, n) for the rows of each group g, which end at ends[g]."""
    grouped = getattr(F, "grouped_mm", None) or torch._grouped_mm
    return grouped(x, weights, offs=ends)


def routed_grouped(
    experts: Experts, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor
) -> torch.Tensor:
    """Tokens sorted by expert, each expert's rows one group of a grouped matmul whose group
    ends are device offsets: experts without tokens are skipped, nothing is read back."""
    k = ids.shape[1]
    flat_ids = ids.flatten()
    order = flat_ids.argsort(stable=True)
    tokens = order // k
    counts = torch.zeros(experts.num_experts, dtype=torch.int32, device=x.device)
    counts.index_add_(0, flat_ids, torch.ones_like(flat_ids, dtype=torch.int32))
    ends = counts.cumsum(0, dtype=torch.int32)
    gate_up = _grouped_mm(x[tokens], experts.gate_up_proj.transpose(1, 2), ends)
    gate, up = gate_up.chunk(2, dim=-1)
    hidden = (F.silu(gate) * up).contiguous()
    down = _grouped_mm(hidden, experts.down_proj.transpose(1, 2), ends)
    down = down * weights.flatten()[order, None]
    return torch.zeros_like(x).index_add_(0, tokens, down.to(x.dtype))


def routed_densely(
    experts: Experts, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor
) -> torch.Tensor:
    """Every expert on every token, weighted zero where it was not routed: correct with no host
    read, at num_experts / k times the work. Only for graph capture without grouped matmuls."""
    dense = torch.zeros(x.shape[0], experts.num_experts, dtype=x.dtype, device=x.device)
    dense.scatter_(1, ids, weights)
    out = torch.zeros_like(x)
    for e in range(experts.num_experts):
        out += experts.expert(e, x) * dense[:, e : e + 1]
    return out


def moe_blocks(model: nn.Module) -> Iterator[SparseMoeBlock]:
    """Every mixture-of-experts block of a model (none in a dense one)."""
    for module in model.modules():
        if isinstance(module, SparseMoeBlock):
            yield module
