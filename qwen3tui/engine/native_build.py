"""Build a C kernel from `engine/csrc/` into a shared library at first use, cache it, load it.

For the CPU kernels (bf16_cpu_kernel, bf16_cpu_gemm, int8_cpu_kernel, int4_cpu_kernel,
cpu_decode_ops): plain C with intrinsics and OpenMP, no torch headers, so compiling takes well
under a second (a torch C++ extension takes minutes on a small machine). The sources ship as
package data; the library lands in a per-user cache keyed by the sources, flags, compiler and
CPU (-march=native picks the instructions of the CPU it runs on: AVX-512 with or without
BF16/VNNI, or AVX2), written atomically so concurrent first runs are safe. Anything missing (no
compiler, a CPU that is not x86-64, Windows) raises NativeUnavailable, and the callers keep
PyTorch's own path. QWEN3TUI_CPU_KERNELS=0 turns every such kernel off.

Each kernel module declares one `NativeKernel`: its source, the class that binds the library's
functions, and a self-test against PyTorch; the build, the cache, the once-per-process load and
the reason it is unavailable are all here.
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
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Generic, TypeVar

from .cache_dirs import user_cache_dir

K = TypeVar("K")
FLAGS = ["-O3", "-fopenmp", "-shared", "-fPIC"]
NATIVE = ("-march=native",)
# What the tests build with; a user's compiler may warn about things ours does not, and a
# warning must not cost them the kernels.
STRICT = ("-Wall", "-Wextra", "-Werror")


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


class NativeKernel(Generic[K]):
    """A kernel of csrc/: `source` built into the cache under `name`, its library handed to
    `wrap` (which binds the functions) and the result checked by `self_test` (which raises
    NativeUnavailable where the build computes something else), at most once per process."""

    def __init__(
        self,
        name: str,
        source: str,
        wrap: Callable[[ctypes.CDLL], K],
        self_test: Callable[[K], None],
        flags: Sequence[str] = (),
    ) -> None:
        self.name, self.source, self.flags = name, source, tuple(flags)
        self._wrap, self._self_test = wrap, self_test
        self._once: OnceKernel[K] = OnceKernel(self.build)

    def build(self, arch: Sequence[str] = NATIVE, extra: Sequence[str] = ()) -> K:
        """The kernel built with these flags and self-tested (tests build every variant)."""
        kernel = self._wrap(load_library(self.name, self.source, arch, (*extra, *self.flags)))
        self._self_test(kernel)
        return kernel

    def load(self) -> K | None:
        """The kernel, built on first use and cached on disk; None where it cannot be had."""
        return self._once.get()

    def why_unavailable(self) -> str | None:
        """Why load() returned None, for diagnostics."""
        return self._once.unavailable_reason


def simd_name(fn: Any) -> str:
    """What a library's `*_simd()` returns: the instruction set it was built for."""
    return c_function(fn, ctypes.c_char_p)().decode()


def c_function(fn: Any, restype: Any, *argtypes: Any) -> Any:
    """A library function with its C signature set (unset, ctypes passes every int as a C int
    and reads an int back)."""
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


def sources() -> dict[str, str]:
    """Every file of engine/csrc by name: the kernels and the header they share."""
    folder = resources.files(__package__) / "csrc"
    return {
        entry.name: entry.read_text(encoding="utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith((".c", ".h"))
    }


def load_library(
    name: str, source: str, arch: Sequence[str] = NATIVE, extra: Sequence[str] = ()
) -> ctypes.CDLL:
    """csrc/`source` built for `arch` (default: this CPU) and loaded."""
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
    files = sources()
    if source not in files:
        raise NativeUnavailable(f"the kernel source {source} is missing from the package")
    flags = [*FLAGS, *arch, *extra]
    texts = [f"{n}\0{t}" for n, t in sorted(files.items())]
    key = hashlib.sha256("\0".join([source, *texts, *flags, cc, *version, _cpu_flags()]).encode())
    target = user_cache_dir("kernels") / f"{name}-{key.hexdigest()[:16]}.so"
    if not target.exists():
        _build(cc, files, source, flags, target)
    return ctypes.CDLL(str(target))


def _build(cc: str, files: dict[str, str], source: str, flags: list[str], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        for name, text in files.items():  # the header beside the source, as in the package
            (Path(tmp) / name).write_text(text, encoding="utf-8")
        out = Path(tmp) / target.name
        try:
            done = subprocess.run(
                [cc, *flags, "-o", str(out), str(Path(tmp) / source)],
                capture_output=True,
                text=True,
                timeout=120,
            )
        except (OSError, subprocess.SubprocessError) as err:
            raise NativeUnavailable(f"compiling failed ({err})") from None
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or ["no output"]
            first = next((line for line in lines if "error" in line), lines[0])
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
