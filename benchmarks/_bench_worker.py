"""What every benchmark subprocess shares: reading its job, timing on a device, peak memory.

Each engine runs in its own process so that its peak memory is its own. A worker reads a JSON
job file, writes a JSON result file, and reports a failure as {"error": "..."} instead of a
traceback the parent would have to parse.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the engine package, when run as a plain script


def run_worker(body: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """`python _bench_x.py JOB.json RESULT.json`: run `body(job)` and write its result."""
    job_file, result_file = sys.argv[1], sys.argv[2]
    job = json.loads(Path(job_file).read_text())
    try:
        setup_threads(job.get("threads"))
        result = body(job)
        code = 0
    except Exception as err:  # a failed engine is a result line, not a crash of the benchmark
        result = {"error": f"{type(err).__name__}: {err}".splitlines()[0]}
        traceback.print_exc()
        code = 1
    Path(result_file).write_text(json.dumps(result, indent=2))
    sys.exit(code)


def setup_threads(threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


def torch_dtype(name: str):
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(device: str, fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds `fn` takes, the device's queued work included."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def memory_now(device: str) -> dict[str, int]:
    """Resident memory now (and allocated device memory on CUDA), in bytes."""
    import torch

    out = {"rss_bytes": _rss_now()}
    if device.startswith("cuda"):
        out["cuda_allocated_bytes"] = torch.cuda.memory_allocated()
    return out


def peak_memory(device: str) -> dict[str, int]:
    """Peak resident memory of this process (and peak allocated device memory on CUDA)."""
    import torch

    # ru_maxrss is in KiB on Linux, bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    out = {"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale}
    if device.startswith("cuda"):
        out["peak_cuda_allocated_bytes"] = torch.cuda.max_memory_allocated()
    return out


def _rss_now() -> int:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def save_logits(path: str, logits) -> None:
    import torch

    torch.save(logits.detach().float().cpu(), path)
