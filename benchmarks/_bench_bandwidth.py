"""Benchmark worker: the benchmark device's memory bandwidth, measured two ways.

- read: sum() over a float32 buffer far larger than the caches; bytes = the buffer.
- copy: dst.copy_(src); bytes = read + written (2 x the buffer), as STREAM counts a copy.
Best of several runs each. Decode at batch 1 reads every weight once per token, so the better
of the two bounds how fast any engine can decode on this machine.
"""

from __future__ import annotations

from typing import Any

from _bench_worker import run_worker, timed


def main(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    device = job["device"]
    size = int(job["buffer_mib"]) * 2**20
    n = size // 4
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    reps = int(job.get("bandwidth_repeats", 5))
    src.sum()
    dst.copy_(src)  # first touch: page faults and lazy allocation are not bandwidth
    read_s = min(timed(device, src.sum)[0] for _ in range(reps))
    copy_s = min(timed(device, lambda: dst.copy_(src))[0] for _ in range(reps))
    read = size / read_s / 1e9
    copy = 2 * size / copy_s / 1e9
    return {
        "buffer_bytes": size,
        "repeats": reps,
        "read_gb_s": read,
        "copy_gb_s": copy,
        "gb_s": max(read, copy),
        "threads": torch.get_num_threads(),
        "method": (
            f"float32 buffer of {size / 2**30:.1f} GiB on {device}: sum() read and copy_() "
            f"(read+write bytes), best of {reps}; the higher of the two is used"
        ),
    }


if __name__ == "__main__":
    run_worker(main)
