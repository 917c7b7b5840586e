"""A decode step on x86 CPUs: the reference decoder's arithmetic as a fixed list of C calls.

At batch 1 a CPU step is ~113 projections and ~90 small ops. Run through the modules, each
call also allocated its output and went through module dispatch and per-call checks, and each
layer ended in a PyTorch residual add: on a 2-core Zen 4 that took 1.06-1.10x (bf16),
1.10-1.14x (int8) and 1.21-1.22x (int4) of this step's time, with the same logits
(benchmarks/RESULTS.md, twelfth session). Here every buffer is allocated once, every call has
its pointers bound once (the projection modules' `row_call`, the C ops of cpu_decode_ops), and
each layer's residual add is done by the next norm's C call (`add_rmsnorm`), so a layer is its
four projections and four other C calls.

A mixture of experts' router stays PyTorch's; its routed experts go through their bound calls
(int4's k gate/ups in one kernel call, then the k downs: `Int4Kernel.gemv_many`), summed as
moe.routed_on_host sums them. A 30B-A3B-shaped int4 model decoded 1.3-1.6x faster than
through the modules.

It computes what engine/model.py computes for one token, bit for bit, except that attention
is the C kernel's (fp32 throughout, rounded once; see cpu_decode_ops) where the reference
calls SDPA. Projections without a bound C call (fp32 nn.Linear, oneDNN without the kernel)
and stacked bf16 experts run their modules into the same buffers. Prefill stays with the
modules: it is matrix products, where dispatch is noise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import cpu_decode_ops
from .cpu_decode_ops import SWIGLU_MULTIPLE, DecodeOpsKernel
from .int4_cpu_kernel import pointers
from .kv_cache import KVCache
from .model import DecoderLayer, LayerOutput, MoeLayerOutput, Qwen3
from .moe import ExpertList, SparseMoeBlock
from .quantize import Int4Linear

# A bound call: projections and the attention take the thread count, the norms and SwiGLU
# nothing; a truthy result means it had no scratch memory.
Call = Callable[..., object]


class CpuDecoder:
    """One token at a time through `model` into `cache`; see the module's docstring."""

    def __init__(self, model: Qwen3, cache: KVCache, ops: DecodeOpsKernel) -> None:
        config, dtype = model.config, model.rope_cos.dtype
        hidden, hd = config.hidden_size, config.head_dim
        self.model, self.cache, self.ops = model, cache, ops
        # The C calls hold raw addresses: keep every module whose tensors they point into
        # alive, even if one were replaced in the model later.
        self.modules = list(model.modules())
        self.embed = model.embed_tokens.weight
        self.vocab = config.vocab_size
        self.policy = getattr(model, "thread_policy", None)  # threads.install sets it
        is_bf16 = int(dtype == torch.bfloat16)
        self.rope = (model.rope_cos, model.rope_sin)  # kept, as the modules are
        self.row_bytes = hd * model.rope_cos.element_size()
        self.cos, self.sin = model.rope_cos.data_ptr(), model.rope_sin.data_ptr()
        self.positions = min(cache.max_tokens, model.rope_cos.shape[0])

        def buffer(modules: list[nn.Module]) -> torch.Tensor:
            return _buffer(modules, dtype)

        layers = model.layers
        self.x = torch.zeros(hidden, dtype=dtype)  # the residual stream
        self.normed = torch.zeros(hidden, dtype=dtype)
        self.qkv = buffer([layer.inputs.qkv_proj for layer in layers])
        self.attended = torch.zeros(config.num_attention_heads * hd, dtype=dtype)
        self.o = buffer([layer.output.o_proj for layer in layers])
        self.mlp_out = torch.zeros(hidden, dtype=dtype)
        dense = [layer.output for layer in layers if isinstance(layer.output, LayerOutput)]
        self.gate_up = buffer([out.gate_up_proj for out in dense]) if dense else None
        self.act = torch.zeros(config.intermediate_size, dtype=dtype) if dense else None
        # Routed experts' buffers, by role and shape: one layer runs at a time, so the layers
        # of one shape share them.
        self.scratch: dict[tuple, torch.Tensor] = {}
        head = model.lm_head if model.lm_head is not None else _TiedHead(model)
        self.logits = buffer([head])

        def norm(weight: torch.Tensor, eps: float, residual: torch.Tensor | None) -> Call:
            if residual is None:  # the first layer's: nothing to add yet
                args = (self.x, weight, self.normed)
                return _bind(ops.c_rmsnorm, *args, 1, hidden, eps, is_bf16, ops.lanes)
            # x += residual, then its norm: the residual add of the block before, done here
            args = (self.x, residual, weight, self.x, self.normed)
            return _bind(ops.c_add_rmsnorm, *args, 1, hidden, eps, is_bf16, ops.lanes)

        self.steps: list[tuple[Call, ...]] = []
        for layer in layers:
            inputs, output = layer.inputs, layer.output
            keys, values = cache.keys[layer.index], cache.values[layer.index]
            attend = _bind(
                ops.c_attend_step, self.qkv, inputs.q_norm.weight, inputs.k_norm.weight, keys,
                values, self.attended, inputs.n_heads, inputs.n_kv, hd, keys.stride(1),
                inputs.q_norm.eps, inputs.k_norm.eps, hd**-0.5, is_bf16, ops.lanes,
            )  # fmt: skip
            residual = self.mlp_out if layer.index else None
            self.steps.append(
                (
                    norm(inputs.norm.weight, inputs.norm.eps, residual),
                    _projection(inputs.qkv_proj, self.normed, self.qkv),
                    attend,
                    _projection(output.o_proj, self.attended, self.o),
                    norm(output.norm.weight, output.norm.eps, self.o),
                    self._mlp(output),
                )
            )
        self.final_norm = norm(model.norm.weight, model.norm.eps, self.mlp_out)
        self.head = _projection(head, self.normed, self.logits)

    def _mlp(self, output: nn.Module) -> Call:
        """normed -> mlp_out: gate/up, SwiGLU and down; or a mixture of experts."""
        if isinstance(output, MoeLayerOutput):
            return self._experts(output.moe) or _module(output.moe, self.normed, self.mlp_out)
        gate_up = _projection(output.gate_up_proj, self.normed, self.gate_up)
        swiglu = self._swiglu(self.gate_up, self.act)
        down = _projection(output.down_proj, self.act, self.mlp_out)

        def mlp(threads: int) -> object:
            return gate_up(threads) or swiglu() or down(threads)

        return mlp

    def _experts(self, block: SparseMoeBlock) -> Call | None:
        """normed -> mlp_out through the token's routed experts, as moe.routed_on_host sums
        them (ascending ids, each output times its weight, added in the dtype); None where an
        expert has no bound C call (stacked bf16 experts): then the block's module runs."""
        experts = block.experts
        if not isinstance(experts, ExpertList):
            return None
        batched = self._experts_together(block)
        if batched is not None:
            return batched
        gate_ups, downs = list(experts.gate_up), list(experts.down)
        dtype, hidden = self.x.dtype, self.x.numel()
        gate_up_out = self._scratch("expert gate/up", _width(gate_ups))
        act = self._scratch("expert act", downs[0].in_features)
        out = self._scratch("expert out", _width(downs))
        calls = []
        for gate_up, down in zip(gate_ups, downs, strict=True):
            calls.append((_row_call(gate_up, self.normed, gate_up_out), _row_call(down, act, out)))
            if None in calls[-1]:
                return None
        swiglu = self._swiglu(gate_up_out, act)
        add = _bind(self.ops.c_scale_add, out, self.mlp_out, hidden, int(dtype == torch.bfloat16))
        router, rows = block.router, self.normed.view(1, hidden)

        def routed(threads: int) -> object:
            weights, ids = router(rows)
            first = 1
            for e, w in sorted(zip(ids[0].tolist(), weights[0].tolist(), strict=True)):
                gate_up, down = calls[e]
                if gate_up(threads) or swiglu() or down(threads):
                    return 1
                add(w, first)
                first = 0
            return 0

        return routed

    def _experts_together(self, block: SparseMoeBlock) -> Call | None:
        """_experts with int4 experts: the k routed gate/ups in one kernel call, then the k
        downs in another (int4_cpu_kernel.gemv_many: each output its own call's bit for bit,
        ~1.45x faster for experts of a few MB each); None where the experts are not all int4
        with the kernel, in one shape."""
        gate_ups, downs = list(block.experts.gate_up), list(block.experts.down)
        if not (_int4_alike(gate_ups, self.x.dtype) and _int4_alike(downs, self.x.dtype)):
            return None
        k, dtype, hidden = block.router.top_k, self.x.dtype, self.x.numel()
        inner = downs[0].in_features
        # One row per routed slot: [gate | up], the SwiGLU, the expert's output.
        gate_up_out = self._scratch("slots gate/up", k, gate_ups[0].row_width)
        act = self._scratch("slots act", k, inner)
        out = self._scratch("slots out", k, downs[0].row_width)
        kernel, group = gate_ups[0].kernel, gate_ups[0].group
        gate_up_many = kernel.bind_gemv_many(self.normed, gate_ups[0].weight, group)
        down_many = kernel.bind_gemv_many(act[0], downs[0].weight, group)
        rows = [self.normed.data_ptr()] * k
        gate_up_io = (pointers(rows), pointers([r.data_ptr() for r in gate_up_out]))
        down_io = (pointers([r.data_ptr() for r in act]), pointers([r.data_ptr() for r in out]))
        gate_up_w = [m.weight.data_ptr() for m in gate_ups]
        down_w = [m.weight.data_ptr() for m in downs]
        swiglus = [self._swiglu(g, a) for g, a in zip(gate_up_out, act, strict=True)]
        bf16 = int(dtype == torch.bfloat16)
        adds = [_bind(self.ops.c_scale_add, o, self.mlp_out, hidden, bf16) for o in out]
        router, normed = block.router, self.normed.view(1, hidden)

        def routed(threads: int) -> object:
            weights, ids = router(normed)  # the top k: one expert per slot
            chosen = sorted(zip(ids[0].tolist(), weights[0].tolist(), strict=True))
            up_w = pointers([gate_up_w[e] for e, _ in chosen])
            dn_w = pointers([down_w[e] for e, _ in chosen])
            if gate_up_many(gate_up_io[0], up_w, gate_up_io[1], threads):
                return 1
            for swiglu in swiglus:
                swiglu()
            if down_many(down_io[0], dn_w, down_io[1], threads):
                return 1
            for slot, (_, w) in enumerate(chosen):
                adds[slot](w, int(slot == 0))
            return 0

        return routed

    def _scratch(self, role: str, *shape: int) -> torch.Tensor:
        """The buffer of `role` and `shape`, made at the first layer that asks for it."""
        key = (role, *shape)
        if key not in self.scratch:
            self.scratch[key] = torch.zeros(shape, dtype=self.x.dtype)
        return self.scratch[key]

    def _swiglu(self, gate_up: torch.Tensor, act: torch.Tensor) -> Callable[[], object]:
        """gate_up [gate | up] -> act = silu(gate) * up, bit for bit as the reference."""
        inner = act.numel()
        if (
            act.dtype == torch.bfloat16
            and self.ops.silu_table is not None
            and inner % SWIGLU_MULTIPLE == 0
        ):
            return _bind(self.ops.c_swiglu, gate_up, self.ops.silu_table, act, 1, inner)
        # fp32, or a size the C SwiGLU is not bit-identical for: PyTorch's
        gate, up = gate_up[:inner], gate_up[inner : 2 * inner]

        def swiglu() -> None:
            torch.mul(F.silu(gate), up, out=act)

        return swiglu

    def __call__(self, token: int, pos: int) -> torch.Tensor:
        """Logits (vocab,) for `token` at position `pos`, its K/V written into the cache. The
        tensor is this decoder's buffer: the next step overwrites it."""
        if not 0 <= pos < self.positions:
            raise ValueError(f"position {pos} is outside the cache of {self.positions}")
        threads = self.policy.apply() if self.policy is not None else torch.get_num_threads()
        self.x.copy_(self.embed[token])
        cos, sin = self.cos + pos * self.row_bytes, self.sin + pos * self.row_bytes
        for norm, qkv, attend, o, o_norm, mlp in self.steps:
            if (
                norm()
                or qkv(threads)
                or attend(cos, sin, pos, threads)
                or o(threads)
                or o_norm()
                or mlp(threads)
            ):
                raise MemoryError("no memory for a decode step's scratch space")
        if self.final_norm() or self.head(threads):
            raise MemoryError("no memory for a decode step's scratch space")
        return self.logits[: self.vocab]


def supported(model: Qwen3, cache: KVCache, ops: DecodeOpsKernel | None) -> bool:
    """Whether CpuDecoder computes this model's steps as the reference does."""
    config = model.config
    dtype = model.rope_cos.dtype if model.rope_cos is not None else None
    hd, kv_heads = config.head_dim, config.num_key_value_heads
    return (
        ops is not None
        and ops.lanes is not None
        and dtype in cpu_decode_ops.DTYPES
        and model.embed_tokens.weight.dtype == dtype
        and all(type(layer) is DecoderLayer for layer in model.layers)
        and all(type(layer.output) in (LayerOutput, MoeLayerOutput) for layer in model.layers)
        and all(
            p.dtype == dtype and p.is_contiguous() and p.device.type == "cpu"
            for p in _norm_weights(model)
        )
        and all(
            t.is_contiguous() and t.shape[1:] == (hd,) for t in (model.rope_cos, model.rope_sin)
        )
        and all(
            t.dtype == dtype
            and t.is_contiguous()
            and t.shape == (1, kv_heads, cache.max_tokens, hd)
            for t in cache.keys + cache.values
        )
        and ops.supports_attention(
            config.num_attention_heads, config.num_key_value_heads, config.head_dim, dtype
        )
    )


def build(model: Qwen3, cache: KVCache) -> CpuDecoder | None:
    """The decoder for `model` over `cache`, or None where its steps stay with the modules
    (no C kernels here, not a CPU model, or a layout it does not take)."""
    if (
        not isinstance(model, Qwen3)
        or model.rope_cos is None
        or model.rope_cos.device.type != "cpu"
    ):
        return None
    ops = cpu_decode_ops.load()
    if not supported(model, cache, ops):
        return None
    return CpuDecoder(model, cache, ops)


def _norm_weights(model: Qwen3) -> list[torch.Tensor]:
    weights = [model.norm.weight]
    for layer in model.layers:
        inputs = layer.inputs
        weights += [inputs.norm.weight, inputs.q_norm.weight, inputs.k_norm.weight]
        weights.append(layer.output.norm.weight)
    return weights


class _TiedHead(nn.Module):
    """The output head over the embedding table (tied embeddings), as Qwen3.logits computes."""

    def __init__(self, model: Qwen3) -> None:
        super().__init__()
        self.model = [model]  # not a submodule
        self.out_features = model.config.vocab_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model[0].logits(x)


def _int4_alike(modules: list[nn.Module], dtype: torch.dtype) -> bool:
    """Int4Linear with the kernel, for activations of `dtype`, every weight of one layout."""
    first = modules[0]
    return dtype in cpu_decode_ops.DTYPES and all(
        isinstance(m, Int4Linear)
        and m.kernel is not None
        and m.weight.shape == first.weight.shape
        and m.group == first.group
        and m.in_features == first.in_features
        for m in modules
    )


def _width(modules: list[nn.Module]) -> int:
    """Values an output buffer for any of `modules`' rows holds (bound calls may write
    padding)."""
    return max(max(getattr(m, "row_width", m.out_features), m.out_features) for m in modules)


def _buffer(modules: list[nn.Module], dtype: torch.dtype) -> torch.Tensor:
    """An output buffer for any of `modules`' rows."""
    return torch.zeros(_width(modules), dtype=dtype)


def _row_call(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Call | None:
    """x -> y through the module's bound C call; None where it has none for x."""
    row_call = getattr(module, "row_call", None)
    return row_call(x, y) if row_call is not None else None


def _projection(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Call:
    """x -> y through the module's bound C call where it has one, else through the module."""
    bound = _row_call(module, x, y)
    return bound if bound is not None else _module(module, x, y)


def _module(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Call:
    """x -> y through the module's forward (its own threads: torch's, which the policy set)."""
    rows, out = x.view(1, 1, -1), y[: getattr(module, "out_features", y.numel())]

    def call(threads: int) -> None:
        out.copy_(module(rows).view(-1))

    return call


def _bind(fn: Callable, *args: object) -> Callable:
    """fn with its leading arguments fixed: tensors as their addresses."""
    return functools.partial(
        fn, *(a.data_ptr() if isinstance(a, torch.Tensor) else a for a in args)
    )
