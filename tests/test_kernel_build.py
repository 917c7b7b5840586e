"""Kernels compiled in a child process (engine/kernel_build.py): `launch` runs a kernel, or
notes it while this thread records; the notes go to a child that warms each kernel up; a
child that fails says why in one line. On a CUDA GPU, the fast step's real kernels land in
Triton's cache that way."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch

from qwen3tui.engine import kernel_build
from qwen3tui.engine.kernel_build import compile_in_child, launch, recording


class FakeKernel:
    """What `launch` and the child need of a Triton kernel: kernel[grid](...), .fn, warmup."""

    def __init__(self, name: str = "kern") -> None:
        self.calls: list = []
        self.fn = type("Fn", (), {"__module__": "fake_kernels", "__qualname__": name})

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.calls.append((grid, args, kwargs))


def test_launch_runs_the_kernel_outside_a_recording():
    kernel = FakeKernel()
    x = torch.zeros(4)
    launch(kernel, (3, 1), x, 7, num_warps=4)
    assert kernel.calls == [((3, 1), (x, 7), {"num_warps": 4})]


def test_a_recording_notes_distinct_launches_by_argument_type_and_runs_none():
    kernel = FakeKernel()
    with recording() as launches:
        for _layer in range(3):  # three layers: one launch to compile
            weight = torch.zeros(8, dtype=torch.bfloat16)
            launch(kernel, (2,), weight, torch.zeros(8), 2048, 1e-6, True, "f32", num_warps=8)
        launch(kernel, (2,), torch.zeros(8), torch.zeros(8), 2048, 1e-6, True, "f32", num_warps=8)
    assert kernel.calls == []
    assert launches == [
        {
            "kernel": "fake_kernels:kern",
            "grid": [2],
            "args": [{"dtype": dtype}, {"dtype": "float32"}, 2048, 1e-6, True, "f32"],
            "kwargs": {"num_warps": 8},
        }
        for dtype in ("bfloat16", "float32")
    ]


def test_a_recording_on_one_thread_leaves_other_threads_launching():
    kernel = FakeKernel()
    with recording() as launches:
        other = threading.Thread(target=launch, args=(kernel, (1,), 5))
        other.start()
        other.join()
    assert kernel.calls == [((1,), (5,), {})]
    assert launches == []


def test_an_argument_the_child_cannot_rebuild_is_refused():
    with recording(), pytest.raises(TypeError, match="list"):
        launch(FakeKernel(), (1,), [1, 2])


FAKE_MODULE = """
import json, os

class Warm:
    def __init__(self, fails=False):
        self.fails = fails

    def warmup(self, *args, grid, **kwargs):
        if self.fails:
            raise RuntimeError("ptxas fatal: no such register")
        with open(os.environ["WARMED"], "a") as f:
            f.write(json.dumps([str(a) for a in args] + [list(grid), kwargs]) + "\\n")

kern = Warm()
broken = Warm(fails=True)
"""


@pytest.fixture
def fake_kernels(tmp_path, monkeypatch) -> Path:
    (tmp_path / "fake_kernels.py").write_text(FAKE_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))  # the child gets this process's path
    warmed = tmp_path / "warmed.jsonl"
    monkeypatch.setenv("WARMED", str(warmed))
    return warmed


def test_the_child_warms_up_each_recorded_launch_with_dtypes_for_tensors(fake_kernels):
    with recording() as launches:
        launch(FakeKernel(), (4, 2), torch.zeros(2, dtype=torch.bfloat16), 16, 0.5, num_warps=4)
        launch(FakeKernel(), (1,), torch.zeros(2, dtype=torch.int32), False)
    assert compile_in_child(launches, torch.device("cpu")) is None
    warmed = [json.loads(line) for line in fake_kernels.read_text().splitlines()]
    assert warmed == [
        ["torch.bfloat16", "16", "0.5", [4, 2], {"num_warps": 4}],
        ["torch.int32", "False", [1], {}],
    ]


def test_a_failing_child_says_why_in_one_line(fake_kernels):
    with recording() as launches:
        launch(FakeKernel("broken"), (1,), 3)
    assert compile_in_child(launches, torch.device("cpu")) == (
        "RuntimeError: ptxas fatal: no such register"
    )
    assert not fake_kernels.exists()


def test_launches_compiled_into_a_cache_before_start_no_child(fake_kernels, tmp_path, monkeypatch):
    """A second launch of the app on a warm cache must not wait for a child's start."""
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "kernel-cache"))
    with recording() as first:
        launch(FakeKernel(), (1,), torch.zeros(2), 16)
    with recording() as other:
        launch(FakeKernel(), (1,), torch.zeros(2), 32)
    with recording() as broken:
        launch(FakeKernel("broken"), (1,), 3)
    assert compile_in_child(first, torch.device("cpu")) is None
    assert compile_in_child(broken, torch.device("cpu")) is not None
    assert len(fake_kernels.read_text().splitlines()) == 1
    run = kernel_build.subprocess.run
    children = []

    def counted(*args, **kwargs):
        children.append(args)
        return run(*args, **kwargs)

    monkeypatch.setattr(kernel_build.subprocess, "run", counted)
    assert compile_in_child(first, torch.device("cpu")) is None  # noted: no child
    assert children == []
    assert compile_in_child(other, torch.device("cpu")) is None  # other launches: a child
    assert compile_in_child(broken, torch.device("cpu")) is not None  # failed: tried again
    assert len(children) == 2
    assert len(fake_kernels.read_text().splitlines()) == 2


def test_nothing_recorded_starts_no_child(monkeypatch):
    def no_child(*args, **kwargs):
        raise AssertionError("a child was started")

    monkeypatch.setattr(kernel_build.subprocess, "run", no_child)
    assert compile_in_child([], torch.device("cpu")) is None


def test_the_fast_steps_launches_can_all_be_recorded():
    """Every launch of a fast decode step (dense and MoE layers) and of the fast prefill
    passes arguments the child can rebuild; recording launches none of them."""
    pytest.importorskip("triton.language")
    from kernel_models import dense_config, random_qwen3

    from qwen3tui.engine.fast_decode import FastDecoder
    from qwen3tui.engine.kv_cache import KVCache

    model = random_qwen3(dense_config((256, 512, 4, 2, 64), 2), torch.float32, "cpu", 128)
    cache = KVCache(model.config, 128, torch.device("cpu"), torch.float32)
    dec = FastDecoder(model, cache)
    dec.logits.fill_(float("nan"))
    with recording() as launches:
        dec(torch.zeros((1, 1), dtype=torch.long), torch.zeros(1, dtype=torch.long), 64)
    assert dec.logits.isnan().all()  # nothing ran
    names = {item["kernel"].split(":")[1] for item in launches}
    assert names == {"embed", "gemv", "attention"}
    assert len(launches) == 1 + 5 + 1  # embed, each projection's shape, attention
    json.dumps(launches)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_child_fills_tritons_cache_with_the_fast_steps_kernels(tmp_path, monkeypatch):
    """After the child, the step's first launch in this process compiles nothing."""
    from kernel_models import dense_config, random_qwen3

    from qwen3tui.engine.decode_step import compile_in_child as compile_model
    from qwen3tui.engine.kv_cache import KVCache

    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    model = random_qwen3(dense_config((512, 1024, 8, 2, 128), 2), torch.bfloat16, "cuda", 1024)
    cache = KVCache(model.config, 1024, torch.device("cuda"), torch.bfloat16)
    assert compile_model(model, cache) is None
    compiled = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.cubin")}
    assert len(compiled) >= 7  # embed, five projections, attention, prefill's kernels
    from qwen3tui.engine.decode_step import build_fast_decoder

    build_fast_decoder(model, cache)
    assert {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.cubin")} == compiled
