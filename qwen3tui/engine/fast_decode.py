"""CUDA's decode step through Triton kernels, beside the readable model (`model.py`).

Per layer: RMSNorm + fused q/k/v projection; attention (q/k norms, RoPE, cache write, split
over the cache and merged); o projection + residual; RMSNorm + gate/up projection + SwiGLU;
down projection + residual. Then the final norm and the output head. Five kernels per
layer, each projection reading its weights once (`triton_kernels.py`). Projections kept in
FP8 (`fp8_linear.Fp8Linear`: FP8 checkpoints on CUDA, `--quantize fp8`) are read as FP8 with
their block scales, converted in registers.

The residual stream and the activations between kernels stay in fp32: never less exact
than the plain path, which rounds them to bf16. Tests and `benchmarks/check_fast_paths.py`
hold it to the plain model's answers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import torch
from torch import nn

from .fp8_linear import Fp8Linear
from .kernel_build import launch
from .kv_cache import KVCache
from .model import Qwen3
from .moe import Experts

# Partial outputs attention's merge loads at once: 64 fp32 registers a thread with 4 warps.
MERGE_VALUES = 8192
# Experts a layer may have: the router's top-k ranks all of them in one program's registers.
MAX_EXPERTS = 256


def available() -> bool:
    """Whether Triton can be imported (it ships with PyTorch's CUDA builds)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def supported(model: Qwen3) -> bool:
    """Qwen3 layers with plain (bf16/fp16/fp32) or FP8 projections, dense or with stacked
    experts (Qwen3-MoE): what these kernels run. FP8 blocks must hold whole programs' rows (a
    multiple of 16) and gate/up's halves must start on a block boundary."""
    try:
        for layer in model.layers:
            moe = getattr(layer.output, "moe", None)
            linears = [layer.inputs.qkv_proj, layer.output.o_proj]
            if moe is None:
                linears += [layer.output.gate_up_proj, layer.output.down_proj]
            elif not isinstance(moe.experts, Experts) or moe.experts.num_experts > MAX_EXPERTS:
                return False  # experts as separate modules (e.g. quantized one by one)
            if any(type(m) not in (nn.Linear, Fp8Linear) for m in linears):
                return False
            fp8 = [m for m in linears if isinstance(m, Fp8Linear)]
            if any(m.block[0] % 16 for m in fp8):
                return False
            gate_up = layer.output.gate_up_proj if moe is None else None
            if isinstance(gate_up, Fp8Linear) and (gate_up.out_features // 2) % gate_up.block[0]:
                return False
    except AttributeError:  # another layer kind
        return False
    return model.config.head_dim in (64, 128, 256)


@dataclass(frozen=True)
class GemvShape:
    rows: int  # output rows (per half with SwiGLU)
    cols: int  # input length
    block_rows: int
    block_cols: int
    warps: int
    stages: int = 3
    depth: int = 1  # weight tiles fetched before the wait (triton_kernels.gemv), at most the row's
    fp8_math: str = "f32"  # FP8 weights' math in triton_kernels.gemv: "f32" or "f16"
    # With PDL, let the next kernel launch before this one waits (its CTAs then fetch their
    # early tiles while this kernel's predecessor still runs): o, 1.0055x the bf16 step.
    early: bool = False


def gemv_shape(rows: int, cols: int, swiglu: bool = False, fp8: bool = False) -> GemvShape:
    """Blocks for a one-row matmul: the fastest of 27 shapes per projection of Qwen3-1.7B on
    an H200, each timed as 28 launches in one CUDA graph with PDL (tune_fast_decode.py).
    FP8 weights: the fastest of 28 shapes and three maths each, swept the same way (FP8 qkv
    4.33 us, o 2.66, down 5.56 per launch converting to fp32; gate/up 9.47 in fp16 against
    9.96: 1.6-2.7 TB/s, bound by converting fp8, not by memory). FastDecoder keeps float32
    models in fp32 math."""
    if fp8:
        if swiglu:
            block_cols = min(512, triton_next_pow2(cols))
            return GemvShape(rows, cols, 16, block_cols, 4, fp8_math="f16")
        elif cols >= 4096 or rows < 4096:  # down, o
            block_rows, block_cols, warps = 8, 2048, 8
        else:
            block_rows, block_cols, warps = 8, 1024, 4
        return GemvShape(rows, cols, block_rows, min(block_cols, triton_next_pow2(cols)), warps)
    if swiglu:
        block_rows, block_cols, warps = 16, 256, 8
    elif rows >= 32768:  # the output head
        block_rows, block_cols, warps = 8, 512, 4
    elif cols >= 4096:  # the down projection
        block_rows, block_cols, warps = 4, 1024, 8
    elif rows > 4096 and cols <= 2048:  # Qwen3-30B-A3B's q/k/v: 2.33 against 2.38 ms a step
        block_rows, block_cols, warps = 8, 512, 8
    elif rows >= 4096:
        block_rows, block_cols, warps = 8, 1024, 4
    else:
        block_rows, block_cols, warps = 4, 1024, 4
    return GemvShape(rows, cols, block_rows, min(block_cols, triton_next_pow2(cols)), warps)


def triton_next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


@dataclass(frozen=True)
class AttentionShape:
    """How attention splits the cache. Measured on an H200 (tune_fast_decode.py
    --attention-sweep): at a 512-position window 8 splits of 64 beat 1 to 4 longer ones
    (1.21 against 1.28-1.41 ms per step); at 16k, about 30 splits beat 52 to 86 (1.83
    against 1.92 ms)."""

    split_min: int = 64  # cache positions per split, at least
    max_splits: int = 32  # splits along the cache, at most (a power of two)
    block_t: int = 64  # positions per tile
    warps: int = 4
    early: bool = False  # with PDL, let o launch before attention waits (GemvShape.early)


@dataclass
class _Layer:
    norm: torch.Tensor
    qkv: torch.Tensor
    q_norm: torch.Tensor
    k_norm: torch.Tensor
    o: torch.Tensor
    post_norm: torch.Tensor
    # The MLP: gate_up (2 * inner, hidden) and down (hidden, inner); with experts, every
    # expert's stacked (experts, 2 * inner, hidden) and (experts, hidden, inner), and the router.
    gate_up: torch.Tensor
    down: torch.Tensor
    keys: torch.Tensor
    values: torch.Tensor
    # FP8 projections' block scales by name ("qkv", "o", "gate_up", "down"); absent: not FP8.
    scales: dict[str, Fp8Scales]
    router: torch.Tensor | None = None


@dataclass(frozen=True)
class Fp8Scales:
    grid: torch.Tensor  # float32, one per block of the weight
    block: tuple[int, int]


def _fp8_scales(**modules: nn.Module) -> dict[str, Fp8Scales]:
    return {
        name: Fp8Scales(m.scale, m.block) for name, m in modules.items() if isinstance(m, Fp8Linear)
    }


class FastDecoder:
    """One decode step of `model` over `cache`: call with (token (1, 1), pos (1,), window)
    for the logits (vocab,). Every input is a device tensor and every buffer is fixed, so a
    CUDA graph of a call replays it for any position below the window."""

    def __init__(
        self,
        model: Qwen3,
        cache: KVCache,
        pdl: bool | None = None,
        shapes: dict[str, GemvShape] | None = None,
        attention: AttentionShape | None = None,
    ) -> None:
        import triton  # noqa: F401  (fails here, not mid-step, where it is missing)

        config = model.config
        self.model, self.cache = model, cache
        self.n_heads, self.n_kv = config.num_attention_heads, config.num_key_value_heads
        self.head_dim, self.eps = config.head_dim, config.rms_norm_eps
        self.hidden, self.inner = config.hidden_size, config.intermediate_size
        self.group = self.n_heads // self.n_kv
        device = model.embed_tokens.weight.device
        self.dtype = model.embed_tokens.weight.dtype
        if pdl is None:
            pdl = (  # programmatic dependent launch: NVIDIA Hopper and later
                device.type == "cuda"
                and torch.version.hip is None
                and torch.cuda.get_device_capability(device)[0] >= 9
                and os.environ.get("TRITON_INTERPRET") != "1"
            )
        self.launch = {"launch_pdl": True} if pdl else {}
        self.pdl = pdl
        self.layers = [_layer(layer, cache, i) for i, layer in enumerate(model.layers)]
        self.head = model.output_weight()
        self.final_norm = model.norm.weight
        f32 = {"device": device, "dtype": torch.float32}
        hd = self.head_dim
        self.x = torch.empty(self.hidden, **f32)
        self.qkv = torch.empty((self.n_heads + 2 * self.n_kv) * hd, **f32)
        self.sparse = any(layer.router is not None for layer in self.layers)
        # Dense layers: attention lets o launch before it waits (PDL), 1.002-1.004x the step.
        self.attention = attention or AttentionShape(early=not self.sparse)
        splits = self.attention.max_splits
        self.part_o = torch.empty(self.n_heads * splits * hd, **f32)
        self.part_ml = torch.empty(self.n_heads * splits * 2, **f32)
        self.attended = torch.empty(self.n_heads * hd, **f32)
        # Splits done per KV head; the last one merges and sets it back to 0.
        self.counter = torch.zeros(self.n_kv, device=device, dtype=torch.int32)
        self.act = torch.empty(self.inner, **f32)
        if self.sparse:  # the router's scores, the k experts' ids and activations
            self.top_k, self.moe_inner = config.num_experts_per_tok, config.moe_intermediate_size
            self.normalize = config.norm_topk_prob
            self.scores = torch.empty(config.num_experts, **f32)
            # Router programs done; the last one ranks the scores and sets it back to 0.
            self.route_counter = torch.zeros(1, device=device, dtype=torch.int32)
            self.expert_ids = torch.empty(self.top_k, device=device, dtype=torch.int32)
            self.expert_weights = torch.empty(self.top_k, **f32)
            self.expert_act = torch.empty(self.top_k * self.moe_inner, **f32)
        self.logits = torch.empty(self.head.shape[0], device=device, dtype=self.dtype)
        fp8 = self.layers[0].scales
        self.shapes = {
            "qkv": gemv_shape(self.qkv.numel(), self.hidden, fp8="qkv" in fp8),
            # o follows attention, which leaves the memory idle: it fetches two tiles early,
            # and (dense layers) lets gate/up launch and fetch its first tiles meanwhile too.
            "o": replace(
                gemv_shape(self.hidden, self.n_heads * hd, fp8="o" in fp8),
                depth=2,
                early=not self.sparse,
            ),
            "gate_up": gemv_shape(self.inner, self.hidden, swiglu=True, fp8="gate_up" in fp8),
            "down": gemv_shape(self.hidden, self.inner, fp8="down" in fp8),
            "head": gemv_shape(self.head.shape[0], self.hidden),
        }
        if self.sparse:
            self.shapes["router"] = replace(gemv_shape(config.num_experts, self.hidden), depth=2)
            self.shapes["expert_gate_up"] = expert_shape(self.moe_inner, self.hidden, gate_up=True)
            self.shapes["expert_down"] = expert_shape(
                self.hidden, self.moe_inner, gate_up=False, top_k=self.top_k
            )
        if self.dtype == torch.float32:  # float32 stays exact: fp16 math only below it
            self.shapes = {
                n: replace(s, fp8_math="f32") if s.fp8_math == "f16" else s
                for n, s in self.shapes.items()
            }
        self.shapes.update(shapes or {})

    def __call__(self, token: torch.Tensor, pos: torch.Tensor, window: int) -> torch.Tensor:
        self.embed(token)
        for layer in self.layers:
            s = layer.scales
            self.project("qkv", layer.qkv, self.x, self.qkv, norm=layer.norm, fp8=s.get("qkv"))
            self.attend(layer, pos, window)
            self.project("o", layer.o, self.attended, self.x, residual=True, fp8=s.get("o"))
            if layer.router is not None:
                self.experts(layer)
                continue
            self.project(
                "gate_up", layer.gate_up, self.x, self.act, norm=layer.post_norm,
                fp8=s.get("gate_up"),
            )  # fmt: skip
            self.project("down", layer.down, self.act, self.x, residual=True, fp8=s.get("down"))
        self.project("head", self.head, self.x, self.logits, norm=self.final_norm)
        return self.logits

    def embed(self, token: torch.Tensor) -> None:
        """x = the embedding of `token` (a (1, 1) device tensor)."""
        from . import triton_kernels as k

        block = 1024
        launch(k.embed, (triton_cdiv(self.hidden, block),),
            self.model.embed_tokens.weight, token, self.x, self.hidden, block, self.pdl,
            **self.launch,
        )  # fmt: skip

    def attend(self, layer: _Layer, pos: torch.Tensor, window: int) -> None:
        """attended = attention of the queries in `qkv` over the layer's cache up to `pos`,
        whose key and value it writes from `qkv`."""
        from . import triton_kernels as k

        a = self.attention
        splits, split_len = attention_splits(window, a)
        group_pad = max(16, triton_next_pow2(self.group))
        # The merge loads the group's partials MERGE_VALUES at a time (64 registers a thread).
        merge_rows = triton_next_pow2(self.group)
        merge_chunk = max(1, min(a.max_splits, MERGE_VALUES // (merge_rows * self.head_dim)))
        launch(k.attention, (self.n_kv, splits),
            self.qkv, layer.keys, layer.values, self.model.rope_cos, self.model.rope_sin,
            layer.q_norm, layer.k_norm, pos, self.part_o, self.part_ml, self.counter,
            self.attended, split_len, splits, layer.keys.stride(1), self.eps,
            self.head_dim**-0.5, self.n_heads, self.n_kv, self.head_dim, self.group, group_pad,
            a.max_splits, a.block_t, self.dtype == torch.float32, self.pdl, merge_rows,
            merge_chunk, a.early, num_warps=a.warps, num_stages=1, **self.launch,
        )  # fmt: skip

    def experts(self, layer: _Layer) -> None:
        """x += the mixture of experts' output for RMSNorm(x): the router's scores and the
        routing, then the k routed experts' SwiGLU and down projections, all on the device."""
        from . import triton_moe as k

        n_experts = self.scores.numel()
        r = self.shapes["router"]
        up, down = self.shapes["expert_gate_up"], self.shapes["expert_down"]
        launch(k.router, (triton_cdiv(r.rows, r.block_rows),),
            layer.router, self.x, layer.post_norm, self.scores, self.route_counter,
            self.expert_ids, self.expert_weights, n_experts, r.cols, self.eps, self.top_k,
            triton_next_pow2(n_experts), self.normalize, r.block_rows, r.block_cols,
            _depth(r), _even(r), self.pdl, num_warps=r.warps, num_stages=r.stages,
            **self.launch,
        )  # fmt: skip
        launch(k.expert_gate_up, (triton_cdiv(up.rows, up.block_rows), self.top_k),
            layer.gate_up, self.x, layer.post_norm, self.expert_ids, self.expert_weights,
            self.expert_act, up.rows, up.cols, self.eps, up.block_rows, up.block_cols,
            _even(up), self.pdl, num_warps=up.warps, num_stages=up.stages, **self.launch,
        )  # fmt: skip
        even_down = (
            down.rows % down.block_rows == 0 and self.expert_act.numel() % down.block_cols == 0
        )
        launch(k.expert_down, (triton_cdiv(down.rows, down.block_rows),),
            layer.down, self.expert_act, self.expert_ids, self.x, down.rows, down.cols,
            self.top_k, down.block_rows, down.block_cols, even_down, self.pdl,
            num_warps=down.warps, num_stages=down.stages, **self.launch,
        )  # fmt: skip

    def project(
        self, name: str, weight, x, out, norm=None, residual: bool = False,
        fp8: Fp8Scales | None = None,
    ) -> None:  # fmt: skip
        """out = weight @ x through the kernel shaped for projection `name`: RMSNorm(x) * norm
        first when `norm` is given; SwiGLU of the halves for gate_up; out += with residual;
        weight float8 scaled by `fp8`'s blocks when given."""
        from . import triton_kernels as k

        s = self.shapes[name]
        swiglu = name == "gate_up"
        even = s.rows % s.block_rows == 0 and s.cols % s.block_cols == 0
        scales, sb = (fp8.grid, fp8.block) if fp8 is not None else (x, (128, 128))
        if fp8 is not None and sb[0] % s.block_rows:
            raise ValueError(f"{name}: {s.block_rows} rows per program straddle FP8 blocks")
        launch(k.gemv, (triton_cdiv(s.rows, s.block_rows),),
            weight, x, norm if norm is not None else x, out, scales, scales.shape[-1], s.rows,
            s.cols, s.rows, self.eps, s.block_rows, s.block_cols, _depth(s), norm is not None,
            swiglu, residual, even, self.pdl, fp8 is not None, sb[0], sb[1],
            s.fp8_math if fp8 is not None else "f32", s.early,
            num_warps=s.warps, num_stages=s.stages, **self.launch,
        )  # fmt: skip


def _layer(layer: nn.Module, cache: KVCache, index: int) -> _Layer:
    """The tensors the kernels read for one decoder layer."""
    inputs, out = layer.inputs, layer.output
    moe = getattr(out, "moe", None)
    if moe is None:
        mlp = {"gate_up": out.gate_up_proj, "down": out.down_proj}
        gate_up, down, router = out.gate_up_proj.weight, out.down_proj.weight, None
    else:
        mlp = {}
        gate_up, down = moe.experts.gate_up_proj, moe.experts.down_proj
        router = moe.router.weight
    return _Layer(
        norm=inputs.norm.weight,
        qkv=inputs.qkv_proj.weight,
        q_norm=inputs.q_norm.weight,
        k_norm=inputs.k_norm.weight,
        o=out.o_proj.weight,
        post_norm=out.norm.weight,
        gate_up=gate_up,
        down=down,
        keys=cache.keys[index],
        values=cache.values[index],
        scales=_fp8_scales(qkv=inputs.qkv_proj, o=out.o_proj, **mlp),
        router=router,
    )


def expert_shape(rows: int, cols: int, gate_up: bool, top_k: int = 1) -> GemvShape:
    """Blocks for the routed experts' kernels (per expert: rows of one half for gate/up; the
    down kernel's tiles span the k experts' `top_k * cols` inputs). gate/up: the best of four
    pairs for Qwen3-30B-A3B on an H200 (bench_moe.py --expert-shapes: 3.61 ms a token against
    4.10 for the dense gate/up's 16 x 256, 8 warps; the best of six again with the new down);
    down: 4 x 1,024, 8 warps, the best of five (404 tok/s against 350 for 4 x 256, 4 warps)."""
    if gate_up:
        return GemvShape(rows, cols, 8, min(256, triton_next_pow2(cols)), 4)
    return GemvShape(rows, cols, 4, min(1024, triton_next_pow2(top_k * cols)), 8)


def _depth(s: GemvShape) -> int:
    """Weight tiles fetched before the wait: the shape's, at most the tiles of a row."""
    return min(s.depth, triton_cdiv(s.cols, s.block_cols))


def _even(s: GemvShape) -> bool:
    return s.rows % s.block_rows == 0 and s.cols % s.block_cols == 0


def attention_splits(window: int, shape: AttentionShape) -> tuple[int, int]:
    """(number of splits, positions per split) for a cache window: one split per
    `split_min` positions, at most `max_splits`, each a whole number of tiles."""
    splits = max(1, min(shape.max_splits, window // shape.split_min))
    split_len = -(-window // splits)
    split_len = -(-split_len // shape.block_t) * shape.block_t
    return -(-window // split_len), split_len


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)
