"""Triton kernels compiled in a child process before the engine builds its fast step.

Triton's code generation holds the GIL for much of its time (its Python, and C++ passes
called from it): built on a thread of the engine's process, it kept the first reply's decode
thread (the plain CUDA graphs, one replay a token) waiting for the GIL after steps, 278-287
tok/s against 311 without the build (H200, Qwen3-1.7B; 306 with the child: RESULTS.md). So
the fast step's and the fast prefill's kernels are first *recorded* — their launch code runs
with `launch` noting each kernel, grid and argument types instead of launching — and a child
process (`python -m qwen3tui.engine.kernel_build`) compiles each of them with Triton's
`warmup` into Triton's disk cache. The engine's own build that follows loads them from there.

Only a speed-up: if the child fails, the engine compiles them itself, as before.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

# The child's limit: on an H200 host the whole cold build took 10.5 s, the child included.
CHILD_TIMEOUT_S = 300

_recording = threading.local()


def launch(kernel: Any, grid: tuple[int, ...], *args: Any, **kwargs: Any) -> None:
    """kernel[grid](*args, **kwargs), or, inside `recording()` on this thread, a note of it."""
    launches = getattr(_recording, "launches", None)
    if launches is None:
        kernel[grid](*args, **kwargs)
    else:
        launches.append(_describe(kernel, grid, args, kwargs))


@contextmanager
def recording() -> Iterator[list[dict]]:
    """Within it, this thread's `launch` calls are noted, not run: the list of distinct ones."""
    _recording.launches = launches = []
    try:
        yield launches
    finally:
        _recording.launches = None
        unique = {json.dumps(item, sort_keys=True): item for item in launches}
        launches[:] = list(unique.values())


def _describe(kernel: Any, grid: tuple[int, ...], args: tuple, kwargs: dict) -> dict:
    """A launch as JSON: tensors by their dtype (what Triton specializes a pointer on, beside
    its 16-byte alignment, which torch's allocations have)."""
    fn = kernel.fn
    return {
        "kernel": f"{fn.__module__}:{fn.__qualname__}",
        "grid": list(grid),
        "args": [_encode(a) for a in args],
        "kwargs": {k: _encode(v) for k, v in kwargs.items()},
    }


def _encode(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return {"dtype": str(value.dtype).removeprefix("torch.")}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot describe a kernel argument of type {type(value).__name__}")


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        return getattr(torch, value["dtype"])  # Triton's warmup takes a dtype for a tensor
    return value


def compile_in_child(launches: list[dict], device: torch.device) -> str | None:
    """Compile `launches` (from `recording`) in a child process into Triton's disk cache
    (the child inherits TRITON_CACHE_DIR); None when it did, else why not, in one line.

    A note in that cache remembers launches compiled there before (the same kernels' source,
    Triton and GPU): then no child starts, since its start alone (importing torch, a CUDA
    context) would keep the first reply on the plain graphs for seconds."""
    if not launches:
        return None
    index = (device.index or 0) if device.type == "cuda" else None
    done_note = _done_note(launches, index)
    if done_note is not None and done_note.exists():
        return None
    spec = {"device": index, "launches": launches}
    # The child imports what this process imports, from where (a checkout, say).
    path = os.pathsep.join(p for p in sys.path if p)
    try:
        done = subprocess.run(
            [sys.executable, "-m", __name__],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
            env={**os.environ, "PYTHONPATH": path},
        )
    except (OSError, subprocess.SubprocessError) as err:
        return f"{type(err).__name__}: {err}"
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return lines[-1] if lines else f"exit status {done.returncode}"
    if done_note is not None:
        try:
            done_note.parent.mkdir(parents=True, exist_ok=True)
            done_note.touch()
        except OSError:  # a read-only cache: the child runs again next time
            pass
    return None


def _done_note(launches: list[dict], device: int | None) -> Path | None:
    """Where a note says these launches are in Triton's cache (TRITON_CACHE_DIR); None
    without that directory. Named by a hash of the launches, the source of the modules
    they come from, Triton's version and the GPU."""
    cache = os.environ.get("TRITON_CACHE_DIR")
    if not cache:
        return None
    key = hashlib.sha256(json.dumps(launches, sort_keys=True).encode())
    modules = sorted({item["kernel"].split(":")[0] for item in launches})
    for name in modules:
        source = getattr(sys.modules.get(name), "__file__", None)
        key.update(name.encode() + (Path(source).read_bytes() if source else b""))
    try:
        import triton

        key.update(str(getattr(triton, "__version__", "")).encode())
    except ImportError:
        pass
    if device is not None:
        key.update(torch.cuda.get_device_name(device).encode())
    return Path(cache) / "qwen3tui-compiled" / key.hexdigest()


def main() -> int:
    """The child: compile each launch read from stdin (see `compile_in_child`)."""
    spec = json.load(sys.stdin)
    if spec["device"] is not None:
        torch.cuda.set_device(spec["device"])
    for item in spec["launches"]:
        module, name = item["kernel"].split(":")
        kernel = getattr(importlib.import_module(module), name)
        args = [_decode(a) for a in item["args"]]
        kwargs = {k: _decode(v) for k, v in item["kwargs"].items()}
        kernel.warmup(*args, grid=tuple(item["grid"]), **kwargs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
