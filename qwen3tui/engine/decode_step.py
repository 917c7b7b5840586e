"""Run one decode step: plainly, or replayed from CUDA graphs of compiled kernels.

At batch 1 a decode step is hundreds of small kernels; launching them from Python costs more
than the GPU takes to run them. A CUDA graph launches them all at once. Graphs need fixed
shapes, so attention reads a fixed window of the cache (the filled length rounded up to a
bucket) with the unfilled tail masked; one graph per bucket, captured the first time a
conversation reaches it and kept for the life of the engine.

torch.compile then fuses each layer's small element-wise kernels. Compiling takes tens of
seconds the first time, so it runs in a background thread: replies stream at once from
graphs of the plain kernels, and switch to compiled ones when they are ready. Inductor's
on-disk cache makes later launches fast.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Callable

import torch
from torch import nn

from .cache_dirs import user_cache_dir
from .kv_cache import KVCache
from .model import CompiledLayers, DecoderLayer, Qwen3

BUCKET = 256  # tokens; at most 255 masked positions are read beyond the filled part
REDUCTION_PROJECTIONS = ("o_proj", "down_proj")  # see ReductionLinear
FLASH_DECODE_FROM = 1024  # cache windows longer than this decode through flash attention
PREFILL_MIN, PREFILL_MAX = 16, 2048  # chunk lengths with prefill graphs (powers of two)


class EagerStep:
    def __init__(self, model: Qwen3, cache: KVCache) -> None:
        self.model, self.cache = model, cache

    def __call__(self, token: torch.Tensor, pos: int) -> torch.Tensor:
        return self.model(token.view(1, 1), pos, self.cache)[0, -1]

    def prepare(self, first: int, last: int) -> None:
        """Nothing to prepare: each step runs the plain modules."""

    def prefill_chunk(self, chunk: list[int], start: int) -> torch.Tensor | None:
        return None  # the caller runs the plain modules


class GraphedStep:
    def __init__(self, model: Qwen3, cache: KVCache, compile: bool = True) -> None:
        self.model, self.cache = model, cache
        device = model.rope_cos.device
        self.token = torch.zeros((1, 1), dtype=torch.long, device=device)
        self.pos = torch.zeros((1,), dtype=torch.long, device=device)
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self.prefills: dict[int, PrefillGraph] = {}
        self.prefill_pool = None
        self.pool = None
        self.compiled_ready: CompiledLayers | None = None
        self.compile_error: str | None = None
        self.compiler = None
        if compile:
            self.compiler = threading.Thread(
                target=self._compile, name="qwen3tui-compile", daemon=True
            )
            self.compiler.start()

    def _compile(self) -> None:
        try:
            self.compiled_ready = compile_layers(self.model, self.cache)
        except Exception as err:  # compiling is an optimization: keep the plain graphs
            self.compile_error = (
                f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            )

    def wait_compiled(self, timeout: float | None = None) -> bool:
        if self.compiler is not None:
            self.compiler.join(timeout)
        return self.compiled_ready is not None

    def __call__(self, token: torch.Tensor, pos: int) -> torch.Tensor:
        self._use_compiled_if_ready()
        self.token.copy_(token.view(1, 1))
        self.pos.fill_(pos)
        graph, logits = self._graph(self._bucket(pos))
        graph.replay()
        return logits

    def prepare(self, first: int, last: int) -> None:
        """Capture now the graphs that steps at positions first..last will replay, so no
        reply pays for a capture (tens of ms) before its first token."""
        self._use_compiled_if_ready()
        for pos in range(first, min(last, self.cache.max_tokens - 1) + 1, BUCKET):
            self._graph(self._bucket(pos))
        self._graph(self._bucket(min(last, self.cache.max_tokens - 1)))

    def prefill_chunk(self, chunk: list[int], start: int) -> torch.Tensor | None:
        """Logits of the chunk's last token from a CUDA graph of the whole prefill, or None
        where there is none to use (then the caller runs the plain modules).

        An uncompiled prefill launches ~30 kernels per layer from Python, which takes longer
        than the GPU needs to run them. The chunk is padded to a power of two (16 to 2,048):
        at most 8 graphs, each captured the first time a prompt needs it.
        """
        bucket = max(PREFILL_MIN, 1 << (len(chunk) - 1).bit_length())
        if (
            not self.model.layers[0].flash
            or bucket > PREFILL_MAX
            or start + bucket > self.cache.max_tokens
        ):
            return None
        if bucket not in self.prefills:
            self.prefills[bucket] = PrefillGraph(self.model, self.cache, bucket, self.prefill_pool)
        prefill = self.prefills[bucket]
        logits = prefill(chunk, start)
        self.prefill_pool = prefill.pool
        return logits

    def _use_compiled_if_ready(self) -> None:
        if self.compiled_ready is not None and self.model.compiled is None:
            # Compiled kernels just became ready: recapture the graphs with them.
            self.model.compiled = self.compiled_ready
            self.graphs.clear()
            self.pool = None

    def _bucket(self, pos: int) -> int:
        return min(-(-(pos + 1) // BUCKET) * BUCKET, self.cache.max_tokens)

    def _graph(self, kv_len: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        if kv_len not in self.graphs:
            self.graphs[kv_len] = self._capture(kv_len)
        return self.graphs[kv_len]

    def _capture(self, kv_len: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        def run() -> torch.Tensor:
            return self.model.decode_step(self.token, self.pos, self.cache, kv_len)[0, -1]

        graph, logits = capture_graph(run, self.pool, warm_up=not self.graphs)
        self.pool = graph.pool()
        return graph, logits


def capture_graph(
    run: Callable[[], torch.Tensor], pool, warm_up: bool
) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
    """`run` captured as a CUDA graph in memory `pool` (None: a new one), and its output.

    With `warm_up` it runs once first, off the capture stream: first-use work such as lazy
    cuBLAS or allocator initialization can't be captured. thread_local: the compile thread
    may use the GPU meanwhile.
    """
    if warm_up:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            run()
        torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
        out = run()
    return graph, out


class PrefillGraph:
    """One chunk length's whole prefill as a CUDA graph (see GraphedStep.prefill_chunk)."""

    def __init__(self, model: Qwen3, cache: KVCache, length: int, pool=None) -> None:
        self.model, self.cache, self.pool = model, cache, pool
        device = model.rope_cos.device
        self.ids = torch.zeros((1, length), dtype=torch.long, device=device)
        self.steps = torch.arange(length, dtype=torch.long, device=device)
        self.positions = self.steps.clone()
        self.last = torch.zeros((1,), dtype=torch.long, device=device)
        self.offsets = torch.tensor([0, length], dtype=torch.int32, device=device)
        self.graph: torch.cuda.CUDAGraph | None = None

    def _run(self) -> torch.Tensor:
        ids, positions, last, offsets = self.ids, self.positions, self.last, self.offsets
        return self.model.prefill_chunk(ids, positions, last, self.cache, offsets)

    def __call__(self, chunk: list[int], start: int) -> torch.Tensor:
        n = len(chunk)
        self.ids[0, :n].copy_(torch.tensor(chunk, dtype=torch.long), non_blocking=True)
        self.positions.copy_(self.steps).add_(start)
        self.last.fill_(n - 1)
        if self.graph is None:
            self._capture()
        self.graph.replay()
        return self.logits

    def _capture(self) -> None:
        # The warm-up computes this very chunk, so its cache writes are the right ones. One
        # pool for all chunk lengths (never replayed at once), apart from the decode graphs'
        # pool, which is replaced when compiled kernels arrive.
        self.graph, self.logits = capture_graph(self._run, self.pool, warm_up=True)
        self.pool = self.graph.pool()


def make_step(model: Qwen3, cache: KVCache) -> EagerStep | GraphedStep:
    device = model.rope_cos.device
    if device.type == "cuda":
        quantized = model.layers[0].inputs.qkv_proj.__class__ is not torch.nn.Linear
        compile = os.environ.get("QWEN3TUI_COMPILE", "1") != "0" and not quantized
        return GraphedStep(model, cache, compile=compile)
    return EagerStep(model, cache)


def compile_layers(model: Qwen3, cache: KVCache) -> CompiledLayers:
    """Each layer's whole decode step (norms, q/k/v, RoPE, cache write, attention, MLP)
    compiled as one graph, o and down projections as reductions (see ReductionLinear).

    Windows up to FLASH_DECODE_FROM attend through grouped matmuls, which Inductor fuses into
    the step; longer ones through flash attention's split kernel, which reads a long cache
    fastest (measured on an H100). All layers share one compiled graph per kind (their
    weights are graph inputs); calling them once here does the compiling.
    """
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(user_cache_dir("inductor")))
    import torch._dynamo

    # Every layer is the same code with other weights: allow one cache entry per layer.
    torch._dynamo.config.cache_size_limit = max(
        torch._dynamo.config.cache_size_limit, 2 * len(model.layers) + 8
    )
    flash = model.layers[0].flash  # CUDA in fp16/bf16: flash attention has no fp32 kernel
    compiled = CompiledLayers(
        steps=[
            torch.compile(reduction_twin(layer).decode, fullgraph=True) for layer in model.layers
        ],
        long_steps=[
            torch.compile(reduction_twin(layer, flash=True).decode, fullgraph=True)
            for layer in model.layers
        ]
        if flash
        else None,
        flash_from=FLASH_DECODE_FROM,
        norm=torch.compile(model.norm, fullgraph=True, dynamic=False),
    )
    device = model.embed_tokens.weight.device
    # Stand-ins made the way the real calls make theirs: guards check dispatch keys too, and
    # a mismatch would recompile on first use, seconds of the user's time. The cache and the
    # step's position buffer are ordinary tensors; activations come from inference mode. Never
    # the live cache itself: a reply may be running.
    keys, values = torch.zeros_like(cache.keys[0]), torch.zeros_like(cache.values[0])
    pos = torch.zeros(1, dtype=torch.long, device=device)
    stream = torch.cuda.Stream(device=device)
    with torch.inference_mode(), torch.cuda.stream(stream):
        x = model.embed_tokens(pos.view(1, 1))
        cos, sin = model.rope_cos.index_select(0, pos), model.rope_sin.index_select(0, pos)
        for steps, window in (
            (compiled.steps, BUCKET),
            (compiled.long_steps, compiled.flash_from + BUCKET),
        ):
            if steps is None or window > cache.max_tokens:
                continue
            mask = torch.ones(1, window, dtype=torch.bool, device=device)
            torch._dynamo.mark_dynamic(mask, 1)  # one compiled step for every window
            for step in steps:
                step(x, cos, sin, keys, values, pos, mask, cache.flash_offsets)
        compiled.norm(x)
    del keys, values
    stream.synchronize()
    return compiled


class ReductionLinear(nn.Module):
    """A one-row matmul written as a multiply-and-sum, for Inductor to generate as its own
    reduction kernel: measured on an H100 faster than cuBLAS for the o and down projections
    at batch 1 (cuBLAS splits K for down_proj and adds a second kernel to combine)."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = weight  # shared with the plain module: no copy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.unsqueeze(-2).float() * self.weight.float()).sum(-1).to(x.dtype)


def reduction_twin(
    layer: DecoderLayer, names: tuple[str, ...] = REDUCTION_PROJECTIONS, flash: bool = False
) -> DecoderLayer:
    """The same layer, same weights, with the projections `names` as ReductionLinear, and
    decode() attending through flash attention if `flash`."""
    twin = copy.copy(layer)
    twin._modules = dict(twin._modules)
    twin.flash_decode = flash
    for part in ("inputs", "output"):
        module = copy.copy(getattr(layer, part))
        module._modules = dict(module._modules)
        for name, child in getattr(layer, part).named_children():
            if name in names:
                setattr(module, name, ReductionLinear(child.weight))
        setattr(twin, part, module)
    return twin


class HostToken:
    """Brings a sampled token id to the host without waiting for work queued after it."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        if self.cuda:
            self.buffer = torch.zeros((), dtype=torch.long, pin_memory=True)
            self.ready = torch.cuda.Event()

    def start(self, token: torch.Tensor) -> None:
        if self.cuda:
            self.buffer.copy_(token, non_blocking=True)
            self.ready.record()
        else:
            self.buffer = token

    def get(self) -> int:
        if self.cuda:
            self.ready.synchronize()
        return int(self.buffer)
