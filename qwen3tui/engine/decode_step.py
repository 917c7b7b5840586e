"""Run one decode step: plainly, or replayed from CUDA graphs.

At batch 1 a decode step is hundreds of small kernels; launching them from Python costs more
than the GPU takes to run them. A CUDA graph launches them all at once. Graphs need fixed
shapes, so attention reads a fixed window of the cache (the filled length rounded up to a
bucket) with the unfilled tail masked; one graph per bucket, captured the first time a
conversation reaches it and kept for the life of the engine.

On CUDA the step then runs the Triton kernels of `fast_decode.py` (five per layer), built in a
background thread: Triton compiles them the first time (seconds, then cached on disk), while
replies stream from graphs of the plain modules; the graphs are recaptured once they are ready.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch

from . import graph_sampler
from .cache_dirs import user_cache_dir
from .graph_sampler import GraphSampler, Kind
from .kv_cache import KVCache
from .model import Qwen3

if TYPE_CHECKING:
    from .cpu_decode import CpuDecoder
from .sampler import Sampler

BUCKET = 256  # tokens; at most 255 masked positions are read beyond the filled part
PREFILL_MIN, PREFILL_MAX = 16, 2048  # chunk lengths with prefill graphs (powers of two)


class EagerStep:
    """Steps run as they are called: on x86 CPUs by cpu_decode's CpuDecoder where it takes the
    model, else by the model's own modules."""

    def __init__(self, model: Qwen3, cache: KVCache, decoder: CpuDecoder | None = None) -> None:
        self.model, self.cache, self.decoder = model, cache, decoder
        self.drawn_host = None  # its tokens come to the host by a copy (HostToken)

    def __call__(self, token: torch.Tensor, pos: int) -> torch.Tensor:
        if self.decoder is not None:
            return self.decoder(int(token), pos)
        return self.model(token.view(1, 1), pos, self.cache)[0, -1]

    def prepare(self, first: int, last: int) -> None:
        """Nothing to prepare: each step runs the plain modules."""

    def next_token(self, token: torch.Tensor, pos: int, sampler: Sampler) -> torch.Tensor:
        return sampler(self(token, pos))

    def prefill_chunk(self, chunk: list[int], start: int) -> torch.Tensor | None:
        return None  # the caller runs the plain modules


class GraphedStep:
    def __init__(self, model: Qwen3, cache: KVCache, fast: bool = True) -> None:
        self.model, self.cache = model, cache
        device = model.rope_cos.device
        self.token = torch.zeros((1, 1), dtype=torch.long, device=device)
        self.pos = torch.zeros((1,), dtype=torch.long, device=device)
        self.device_pos: int | None = None  # what self.pos holds, as far as the host knows
        # One graph per (bucket, draw): the draw's Kind where the graph draws the next token
        # too (graph_sampler), None where it ends at the logits.
        self.graphs: dict[tuple[int, Kind | None], tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self.picker: GraphSampler | None = None  # the draw inside the graphs (fast kernels)
        self.picker_ready: GraphSampler | None = None  # built with the fast kernels
        self.last_kind: Kind | None = None  # the last reply's draw, for prepare()
        # Pinned host memory the last next_token's graph writes its token into, or None.
        self.drawn_host: torch.Tensor | None = None
        self.prefills: dict[int, PrefillGraph] = {}
        self.prefill_pool = None
        self.pool = None
        self.fast = None  # the FastDecoder the graphs replay, once it is ready
        self.compiled_ready = None  # the FastDecoder, built and compiled
        self.prefill_ready = False  # fast_prefill's kernels built (used once `fast` is)
        self.compile_error: str | None = None
        self.child_error: str | None = None  # why the kernels were not compiled in a child
        self.compiler = None
        if fast:
            from . import fast_decode

            if not fast_decode.available():
                self.compile_error = "Triton is not installed"
            elif not fast_decode.supported(model):
                self.compile_error = "these layers have no fast kernels"
            else:
                self.compiler = threading.Thread(
                    target=self._compile, name="qwen3tui-compile", daemon=True
                )
                self.compiler.start()

    def _compile(self) -> None:
        with _short_gil_slices():
            self._build()

    def _build(self) -> None:
        self.child_error = compile_in_child(self.model, self.cache)
        try:
            fast = build_fast_decoder(self.model, self.cache)
        except Exception as err:  # an optimization: keep the plain graphs
            self.compile_error = _one_line(err)
            return
        try:
            self.prefill_ready = build_fast_prefill(self.model)
        except Exception as err:  # an optimization too: the plain prefill graphs stay
            self.compile_error = f"prefill: {_one_line(err)}"
        try:
            self.picker_ready = build_graph_sampler(fast)
        except Exception as err:  # and so is the draw in the graph: Sampler draws then
            self.compile_error = f"draw: {_one_line(err)}"
        self.compiled_ready = fast

    def wait_compiled(self, timeout: float | None = None) -> bool:
        if self.compiler is not None:
            self.compiler.join(timeout)
        return self.compiled_ready is not None

    def __call__(self, token: torch.Tensor, pos: int) -> torch.Tensor:
        self._use_compiled_if_ready()
        self._inputs(token, pos)
        graph, logits = self._graph(self._bucket(pos))
        graph.replay()
        return logits

    def next_token(self, token: torch.Tensor, pos: int, sampler: Sampler) -> torch.Tensor:
        """The token after `token` (at `pos`) as `sampler` draws it: a 0-d device tensor,
        queued. With the fast kernels the graph draws it too (graph_sampler) and leaves it,
        and the next position, where its next replay reads them: nothing runs between."""
        self._use_compiled_if_ready()
        kind = graph_sampler.kind(sampler.params) if self.picker is not None else None
        self.drawn_host = None
        if kind is None:
            return sampler(self(token, pos))
        try:
            graph, _ = self._graph(self._bucket(pos), kind)
        except Exception as err:  # e.g. a draw's kernel that would not compile
            self.compile_error, self.picker = f"draw: {_one_line(err)}", None
            return sampler(self(token, pos))
        if self.picker.drawing is not sampler:
            self.picker.begin(sampler)
        self._inputs(token, pos)
        graph.replay()
        self.device_pos, self.last_kind = pos + 1, kind
        self.drawn_host = self.picker.mailbox[(pos + 1) % 2]
        return self.token.view(())

    def _inputs(self, token: torch.Tensor, pos: int) -> None:
        if token.data_ptr() != self.token.data_ptr():  # else the last replay wrote it there
            self.token.copy_(token.view(1, 1))
        if pos != self.device_pos:
            self.pos.fill_(pos)
            self.device_pos = pos

    def prepare(self, first: int, last: int) -> None:
        """Capture now the graphs that steps at positions first..last will replay (those
        drawing as the last reply did), so no reply pays for a capture (tens of ms) before
        its first token."""
        self._use_compiled_if_ready()
        kind = self.last_kind if self.picker is not None else None
        last = min(last, self.cache.max_tokens - 1)
        for pos in [*range(first, last + 1, BUCKET), last]:
            self._graph(self._bucket(pos), kind)

    def prefill_chunk(self, chunk: list[int], start: int) -> torch.Tensor | None:
        """Logits of the chunk's last token from a CUDA graph of the whole prefill, or None
        where there is none to use (then the caller runs the plain modules).

        An uncompiled prefill launches ~30 kernels per layer from Python, which takes longer
        than the GPU needs to run them. The chunk is padded to a power of two (16 to 2,048):
        at most 8 graphs, each captured the first time a prompt needs it.
        """
        self._use_compiled_if_ready()
        bucket = max(PREFILL_MIN, 1 << (len(chunk) - 1).bit_length())
        if (
            not self.model.layers[0].flash
            or bucket > PREFILL_MAX
            or start + bucket > self.cache.max_tokens
        ):
            return None
        if bucket not in self.prefills:
            fast = self.fast is not None and self.prefill_ready
            self.prefills[bucket] = PrefillGraph(
                self.model, self.cache, bucket, self.prefill_pool, fast
            )
        prefill = self.prefills[bucket]
        logits = prefill(chunk, start)
        self.prefill_pool = prefill.pool
        return logits

    def _use_compiled_if_ready(self) -> None:
        if self.compiled_ready is not None and self.fast is None:
            # The fast kernels just became ready: recapture the graphs with them.
            self.fast = self.compiled_ready
            self.picker = self.picker_ready
            self.graphs.clear()
            self.pool = None
            if self.prefill_ready:  # and the prefill graphs with its kernels
                self.prefills.clear()
                self.prefill_pool = None

    def _bucket(self, pos: int) -> int:
        return min(-(-(pos + 1) // BUCKET) * BUCKET, self.cache.max_tokens)

    def _graph(
        self, kv_len: int, kind: Kind | None = None
    ) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        if (kv_len, kind) not in self.graphs:
            self.graphs[kv_len, kind] = self._capture(kv_len, kind)
        return self.graphs[kv_len, kind]

    def _capture(self, kv_len: int, kind: Kind | None) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        fast, picker = self.fast, self.picker
        if kind is not None:
            picker.warm(fast.logits, kind)  # Triton compiles on a first launch, not in a capture

        def run() -> torch.Tensor:
            if fast is None:
                return self.model.decode_step(self.token, self.pos, self.cache, kv_len)[0, -1]
            logits = fast(self.token, self.pos, kv_len)
            if kind is not None:
                picker.draw(logits, self.token, self.pos, kind)
            return logits

        # The fast kernels were run once when built; the plain ones need a first run (cuBLAS).
        graph, logits = capture_graph(run, self.pool, warm_up=fast is None and not self.graphs)
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

    def __init__(
        self, model: Qwen3, cache: KVCache, length: int, pool=None, fast: bool = False
    ) -> None:
        self.model, self.cache, self.pool, self.fast = model, cache, pool, fast
        device = model.rope_cos.device
        self.ids = torch.zeros((1, length), dtype=torch.long, device=device)
        self.steps = torch.arange(length, dtype=torch.long, device=device)
        self.positions = self.steps.clone()
        self.last = torch.zeros((1,), dtype=torch.long, device=device)
        self.offsets = torch.tensor([0, length], dtype=torch.int32, device=device)
        self.graph: torch.cuda.CUDAGraph | None = None

    def _run(self) -> torch.Tensor:
        ids, positions, last, offsets = self.ids, self.positions, self.last, self.offsets
        if self.fast:
            from . import fast_prefill

            return fast_prefill.prefill_chunk(self.model, ids, positions, last, self.cache, offsets)
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


# While the kernels build, the decode thread asks for the GIL back after every step (it lets
# go while the GPU runs): Python makes it wait up to the switch interval, 5 ms by default,
# more than a whole step of the plain graphs. Triton's code generation is mostly Python.
BUILD_SWITCH_INTERVAL_S = 0.0002


@contextmanager
def _short_gil_slices() -> Iterator[None]:
    before = sys.getswitchinterval()
    short = min(before, BUILD_SWITCH_INTERVAL_S)
    sys.setswitchinterval(short)
    try:
        yield
    finally:
        if abs(sys.getswitchinterval() - short) < 1e-6:  # else someone set it since: theirs stands
            sys.setswitchinterval(before)


def make_step(model: Qwen3, cache: KVCache) -> EagerStep | GraphedStep:
    if model.rope_cos.device.type == "cuda":
        return GraphedStep(model, cache, fast=os.environ.get("QWEN3TUI_COMPILE", "1") != "0")
    from . import cpu_decode

    return EagerStep(model, cache, cpu_decode.build(model, cache))


def compile_in_child(model: Qwen3, cache: KVCache) -> str | None:
    """The fast step's and fast prefill's kernels compiled into Triton's disk cache by a child
    process (kernel_build), so that the builds that follow load them instead of generating
    code on this process's GIL; None when done, else why not (the builds then compile)."""
    from . import kernel_build

    os.environ.setdefault("TRITON_CACHE_DIR", str(user_cache_dir("triton")))
    try:
        with kernel_build.recording() as launches:
            build_graph_sampler(build_fast_decoder(model, cache))
            build_fast_prefill(model)
    except Exception as err:  # the builds proper will say what is wrong
        return _one_line(err)
    return kernel_build.compile_in_child(launches, model.rope_cos.device)


def build_fast_decoder(model: Qwen3, cache: KVCache):
    """The model's FastDecoder over `cache`, its kernels compiled: first on a scratch cache,
    so the live one (a reply may be running) is never written, and on a side stream."""
    os.environ.setdefault("TRITON_CACHE_DIR", str(user_cache_dir("triton")))
    from .fast_decode import FastDecoder

    device = model.rope_cos.device
    # Never past the model's positions: the RoPE tables end there (a short context setting).
    last = min(2 * BUCKET, model.rope_cos.shape[0])
    scratch = KVCache(model.config, last, device, model.rope_cos.dtype)
    with _beside_the_live_stream(device):
        token = torch.zeros((1, 1), dtype=torch.long, device=device)
        pos = torch.zeros((1,), dtype=torch.long, device=device)
        trial = FastDecoder(model, scratch)
        for window in sorted({min(BUCKET, last), last}):  # one split, then several
            pos.fill_(window - 1)
            trial(token, pos, window)
        fast = FastDecoder(model, cache)
    return fast


def build_graph_sampler(fast) -> GraphSampler:
    """The draw for `fast`'s graphs, its common kernels compiled (on a side stream)."""
    device = fast.logits.device
    picker = GraphSampler(fast.logits.numel(), device, fast.pdl)
    with _beside_the_live_stream(device):
        for kind in graph_sampler.COMMON_KINDS:  # greedy, Qwen's top-k of 20
            picker.warm(fast.logits, kind)
    return picker


def _one_line(err: Exception) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


def build_fast_prefill(model: Qwen3) -> bool:
    """Whether fast_prefill's kernels run for this model; if so they are compiled here (one
    chunk on a scratch cache, on a side stream), so no reply waits for it."""
    from . import fast_prefill

    if not fast_prefill.supported(model):
        return False
    device = model.rope_cos.device
    length = min(PREFILL_MIN, model.rope_cos.shape[0])
    scratch = KVCache(model.config, length, device, model.rope_cos.dtype)
    with _beside_the_live_stream(device):
        ids = torch.zeros((1, length), dtype=torch.long, device=device)
        positions = torch.arange(length, device=device)
        last = torch.zeros((1,), dtype=torch.long, device=device)
        offsets = torch.tensor([0, length], dtype=torch.int32, device=device)
        fast_prefill.prefill_chunk(model, ids, positions, last, scratch, offsets)
    return True


@contextmanager
def _beside_the_live_stream(device: torch.device) -> Iterator[None]:
    """Inference on a side stream, finished when the block ends: a reply may be running on
    the default stream meanwhile."""
    stream = torch.cuda.Stream(device=device)
    with torch.inference_mode(), torch.cuda.stream(stream):
        yield
    stream.synchronize()


class HostToken:
    """Brings a sampled token id to the host without waiting for work queued after it."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        if self.cuda:
            self.pinned = torch.zeros((), dtype=torch.long, pin_memory=True)
            self.ready = torch.cuda.Event()

    def start(self, token: torch.Tensor, written: torch.Tensor | None = None) -> None:
        """`written`: pinned memory the queued work writes the token into itself (the decode
        graph's draw), so only an event is queued: a copy between two steps would hold the
        next one back (on an H200, ~1% of a step)."""
        if not self.cuda:
            self.buffer = token
            return
        if written is None:
            self.pinned.copy_(token, non_blocking=True)
            written = self.pinned
        self.buffer = written
        self.ready.record()

    def get(self) -> int:
        if self.cuda:
            self.ready.synchronize()
        return int(self.buffer)
