"""How many CPU threads the engine computes with: one policy for prefill, decode and the kernels.

Start from the cores this process may use: its CPU affinity and its cgroup's CPU quota (a
container limited to 2 CPUs on a 64-core host gets 2 threads, not 64), never os.cpu_count().

Then give way to other programs. Every matmul ends in a barrier where all threads wait for the
last one; when another program keeps one of two cores busy, the thread sharing that core runs
half the time and every barrier waits for it: decode of Qwen3-1.7B fell from 6.1 to 2.1 tok/s
on a 2-core machine where one thread alone gave 3.8-4.7. So while the model runs, the policy
looks every half second at how much CPU is free for it (idle time on its cores plus what it
uses itself, from /proc/stat and /proc/self/stat) and computes with as many threads as there
are free cores, at least one: two on a quiet 2-core machine, one while another program spins.

QWEN3TUI_THREADS=N fixes the count at N (no giving way).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import EngineError

ENV = "QWEN3TUI_THREADS"
INTERVAL_S = 0.5  # how often the free cores are looked at while the model runs
STALE_S = 2.0  # an older sample (the model sat idle) says nothing about now: start afresh
# A core counts as free when at most this much of it is taken by others: a thread on a core
# shared with a busy program stalls every barrier, while one thread fewer costs little.
FREE_SLACK = 0.35


def override() -> int | None:
    """QWEN3TUI_THREADS as a count, None when unset; a bad value is one clear error."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise EngineError(
            f"{ENV}={text!r} is not a thread count.", "Set it to 1 or more, or unset it."
        )
    return int(text)


def usable_cores(
    affinity: Iterable[int] | None = None,
    cpu_limit: Callable[[], float | None] | None = None,
) -> int:
    """Cores this process may run on: its affinity, capped by its cgroup's CPU quota."""
    if affinity is None:
        try:
            affinity = os.sched_getaffinity(0)
        except (AttributeError, OSError):  # macOS, Windows
            affinity = range(os.cpu_count() or 1)
    cores = max(1, len(set(affinity)))
    limit = (cpu_limit or cgroup_cpu_limit)()
    if limit is not None:
        # A quota of 1.5 CPUs throttles two busy threads for part of every period: round down.
        cores = min(cores, max(1, math.floor(limit + 1e-9)))
    return cores


def cgroup_cpu_limit(
    root: Path = Path("/sys/fs/cgroup"), self_cgroup: Path = Path("/proc/self/cgroup")
) -> float | None:
    """The tightest CPU quota (in CPUs) on this process's cgroup and its parents; None if none.

    cgroup v2 writes `cpu.max` as "QUOTA PERIOD" or "max PERIOD"; v1 writes
    cpu.cfs_quota_us (-1 for none) and cpu.cfs_period_us under the cpu controller's mount.
    """
    try:
        lines = self_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    candidates: list[tuple[Path, str]] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        rel = path.strip().lstrip("/")
        if controllers == "":  # v2
            candidates += [(d, "v2") for d in _with_parents(root / rel, root)]
        elif "cpu" in controllers.split(","):  # v1
            for mount in (root / controllers, root / "cpu", root / "cpu,cpuacct"):
                candidates += [(d, "v1") for d in _with_parents(mount / rel, mount)]
    if not candidates:
        candidates = [(root, "v2"), (root / "cpu", "v1")]
    limits = [x for d, kind in dict.fromkeys(candidates) if (x := _read_limit(d, kind))]
    return min(limits) if limits else None


def _with_parents(path: Path, top: Path) -> list[Path]:
    out = [path]
    while path != top and top in path.parents:
        path = path.parent
        out.append(path)
    return out


def _read_limit(folder: Path, kind: str) -> float | None:
    try:
        if kind == "v2":
            quota, period = (folder / "cpu.max").read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError, ZeroDivisionError):
        return None


@dataclass(frozen=True)
class CpuSample:
    """Cumulative clock ticks: idle on the process's cores, and the process's own CPU time."""

    idle: int
    own: int


def read_sample(cpus: frozenset[int] | None = None) -> CpuSample | None:
    """From /proc/stat (per-core idle + iowait) and /proc/self/stat (utime + stime, all
    threads); None where those do not exist (not Linux)."""
    try:
        stat = Path("/proc/stat").read_text().splitlines()
        own_fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    idle = 0
    for line in stat:
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *ticks = line.split()
        if cpus is not None and int(name[3:]) not in cpus:
            continue
        idle += int(ticks[3]) + int(ticks[4])
    # Fields 14 and 15 of /proc/PID/stat; here counted after the ")" that ends field 2.
    return CpuSample(idle=idle, own=int(own_fields[11]) + int(own_fields[12]))


def free_cores(before: CpuSample, after: CpuSample, seconds: float, ticks_per_s: float) -> float:
    """Cores that were idle or ours between two samples, on average."""
    if seconds <= 0:
        return 0.0
    ticks = (after.idle - before.idle) + (after.own - before.own)
    return ticks / (seconds * ticks_per_s)


def threads_for(cores: int, free: float) -> int:
    """Threads to use: the free cores (a core mostly free counts), at least 1, at most cores."""
    return max(1, min(cores, math.floor(free + FREE_SLACK)))


class ThreadPolicy:
    """The thread count to compute with now; `current()` is cheap enough to call per step."""

    def __init__(
        self,
        cores: int | None = None,
        fixed: int | None = None,
        sample: Callable[[], CpuSample | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        ticks_per_s: float | None = None,
    ) -> None:
        self.cores = cores or usable_cores()
        self.fixed = fixed
        if sample is None:
            try:
                cpus = frozenset(os.sched_getaffinity(0))
            except (AttributeError, OSError):
                cpus = None
            sample = lambda: read_sample(cpus)  # noqa: E731
        self._sample = sample
        self._clock = clock
        self._ticks_per_s = ticks_per_s or _clock_ticks()
        self._lock = threading.Lock()
        self._last: tuple[float, CpuSample] | None = None
        self._threads = fixed or self.cores

    def current(self) -> int:
        if self.fixed is not None:
            return self.fixed
        now = self._clock()
        last = self._last
        if last is not None and now - last[0] < INTERVAL_S:
            return self._threads
        with self._lock:
            last = self._last
            if last is not None and now - last[0] < INTERVAL_S:
                return self._threads
            sample = self._sample()
            if sample is None:
                return self._threads
            if last is not None and now - last[0] <= STALE_S:
                free = free_cores(last[1], sample, now - last[0], self._ticks_per_s)
                self._threads = threads_for(self.cores, free)
            self._last = (now, sample)
            return self._threads

    def apply(self) -> int:
        """Set torch's thread count for the calling thread (OpenMP keeps it per thread) to
        the current choice; the C kernels read it from torch. Returns it."""
        import torch

        n = self.current()
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
        return n


def _clock_ticks() -> float:
    try:
        return float(os.sysconf("SC_CLK_TCK"))
    except (AttributeError, ValueError, OSError):
        return 100.0


def policy_from_env() -> ThreadPolicy:
    """The policy for this process: QWEN3TUI_THREADS when set, else the usable cores."""
    return ThreadPolicy(fixed=override())


def install(model, policy: ThreadPolicy | None = None) -> ThreadPolicy:
    """Apply the policy now and before every forward pass of `model` (a torch module), in the
    thread that runs it: the chat worker, the next-turn warm-up, the main thread alike. It is
    kept as `model.thread_policy` for decode steps that do not go through forward (cpu_decode)."""
    policy = policy or policy_from_env()
    policy.apply()
    model.thread_policy = policy

    def before_forward(module, args) -> None:
        policy.apply()

    model.register_forward_pre_hook(before_forward)
    return policy
