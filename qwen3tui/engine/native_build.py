"""Build a small C source into a shared library at first use, cache it, load it with ctypes.

For the CPU kernels (int8_cpu_kernel, bf16_cpu_kernel): plain C with intrinsics and OpenMP, no
torch headers, so compiling takes well under a second (a torch C++ extension takes minutes on a
small machine). The library lands in a per-user cache keyed by the source, flags, compiler and
CPU (-march=native bakes the CPU in), written atomically so concurrent first runs are safe.
Anything missing (no compiler, another architecture, Windows) raises NativeUnavailable, and the
callers keep PyTorch's own path. QWEN3TUI_CPU_KERNELS=0 turns every such kernel off.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from .cache_dirs import user_cache_dir

K = TypeVar("K")
FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC"]


class NativeUnavailable(Exception):
    """Why a kernel cannot be had here; callers fall back to PyTorch."""


class OnceKernel(Generic[K]):
    """A kernel built at most once per process; None where it cannot be had, and why."""

    def __init__(self, build: Callable[[], K]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._tried = False
        self._kernel: K | None = None
        self.unavailable_reason: str | None = None

    def get(self) -> K | None:
        with self._lock:
            if not self._tried:
                self._tried = True
                try:
                    self._kernel = self._build()
                except Exception as err:  # any failure only costs speed: PyTorch's path runs
                    self.unavailable_reason = f"{type(err).__name__}: {err}"
            return self._kernel


def load_library(name: str, source: str) -> ctypes.CDLL:
    if os.environ.get("QWEN3TUI_CPU_KERNELS", "1") == "0":
        raise NativeUnavailable("turned off by QWEN3TUI_CPU_KERNELS=0")
    if platform.machine().lower() not in ("x86_64", "amd64") or sys.platform == "win32":
        raise NativeUnavailable(f"no build for {sys.platform} on {platform.machine()}")
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise NativeUnavailable("no C compiler (cc) on PATH")
    try:
        version = subprocess.run(
            [cc, "--version"], capture_output=True, text=True, timeout=30
        ).stdout.splitlines()[:1]
    except (OSError, subprocess.SubprocessError) as err:
        raise NativeUnavailable(f"the C compiler {cc} does not run ({err})") from None
    key = hashlib.sha256("\0".join([source, *FLAGS, cc, *version, _cpu_flags()]).encode())
    target = user_cache_dir("kernels") / f"{name}-{key.hexdigest()[:16]}.so"
    if not target.exists():
        _build(cc, source, target)
    return ctypes.CDLL(str(target))


def _build(cc: str, source: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src = Path(tmp) / "kernel.c"
        src.write_text(source)
        out = Path(tmp) / target.name
        try:
            done = subprocess.run(
                [cc, *FLAGS, "-o", str(out), str(src)], capture_output=True, text=True, timeout=120
            )
        except (OSError, subprocess.SubprocessError) as err:
            raise NativeUnavailable(f"compiling failed ({err})") from None
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or ["no output"])[0]
            raise NativeUnavailable(f"compiling failed: {first}")
        os.replace(out, target)  # atomic: a concurrent build leaves one complete file


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()
