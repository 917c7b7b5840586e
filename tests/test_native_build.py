"""native_build.NativeKernel, the one loader of every CPU kernel module, on tiny C sources
written here: it builds once into the cache and the next process reuses the file, a failing
self-test or a missing compiler leaves the kernel off with a one-line reason, and the kernel's
own flags and the tests' strict ones reach the compiler."""

from __future__ import annotations

import ctypes
import platform
import shutil

import pytest

from qwen3tui.engine import native_build
from qwen3tui.engine.native_build import STRICT, NativeKernel, NativeUnavailable, c_function

ADD = "int tiny_add(int a, int b) { return a + b; }\n"
# What the compiler was given, seen from inside: -DANSWER=... and whether -Wall was on.
ANSWER = "int tiny_answer(void) { int unused; return ANSWER; }\n"

needs_compiler = pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64") or not shutil.which("cc"),
    reason="native_build only builds on x86-64 with a C compiler",
)


class Tiny:
    def __init__(self, lib: ctypes.CDLL) -> None:
        self.add = c_function(lib.tiny_add, ctypes.c_int, ctypes.c_int, ctypes.c_int)


class Answer:
    def __init__(self, lib: ctypes.CDLL) -> None:
        self.answer = c_function(lib.tiny_answer, ctypes.c_int)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh kernel cache and the tiny sources in place of the package's."""
    monkeypatch.setenv("QWEN3TUI_HOME", str(tmp_path))
    monkeypatch.delenv("QWEN3TUI_CPU_KERNELS", raising=False)
    monkeypatch.setattr(native_build, "sources", lambda: {"tiny.c": ADD, "answer.c": ANSWER})
    return tmp_path / "cache" / "kernels"


@pytest.fixture
def compiles(monkeypatch) -> list[str]:
    """The names of the libraries native_build compiles, as it compiles them."""
    names: list[str] = []
    real = native_build._build

    def counted(cc, files, source, flags, target):
        names.append(target.name)
        real(cc, files, source, flags, target)

    monkeypatch.setattr(native_build, "_build", counted)
    return names


def _checked_add(tests: list[Tiny]):
    def self_test(kernel: Tiny) -> None:
        tests.append(kernel)
        if kernel.add(2, 3) != 5:
            raise NativeUnavailable("self-test failed")

    return self_test


@needs_compiler
def test_a_kernel_is_built_once_and_the_next_process_reuses_the_library(cache, compiles):
    tests: list[Tiny] = []
    first = NativeKernel("tiny", "tiny.c", Tiny, _checked_add(tests))
    kernel = first.load()
    assert kernel is not None and kernel.add(40, 2) == 42
    assert first.load() is kernel  # once per process: no second build, no second self-test
    assert len(tests) == 1 and first.why_unavailable() is None
    assert len(compiles) == 1 and compiles[0].startswith("tiny-")
    # A new process (a new NativeKernel) finds the library in the cache and compiles nothing,
    # but still self-tests what it loaded.
    again = NativeKernel("tiny", "tiny.c", Tiny, _checked_add(tests))
    assert again.load().add(1, 1) == 2
    assert len(compiles) == 1 and len(tests) == 2
    assert [p.name for p in cache.iterdir()] == compiles


@needs_compiler
def test_a_failing_self_test_turns_the_kernel_off_with_its_reason(cache, compiles):
    tests: list[Tiny] = []

    def wrong(kernel: Tiny) -> None:
        tests.append(kernel)
        raise NativeUnavailable("self-test failed (add)")

    native = NativeKernel("tiny", "tiny.c", Tiny, wrong)
    assert native.load() is None
    assert native.why_unavailable() == "NativeUnavailable: self-test failed (add)"
    assert native.load() is None and len(tests) == 1  # not tried again in this process
    with pytest.raises(NativeUnavailable, match="self-test failed"):
        native.build()  # what the tests call: the failure itself


def test_no_compiler_gives_the_reason_and_builds_nothing(cache, compiles, monkeypatch):
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")  # past the CPU check anywhere
    monkeypatch.setenv("CC", str(cache.parent / "no-such-compiler"))
    native = NativeKernel("tiny", "tiny.c", Tiny, _checked_add([]))
    assert native.load() is None
    reason = native.why_unavailable()
    assert reason.startswith("NativeUnavailable: the C compiler ") and "does not run" in reason
    monkeypatch.delenv("CC")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    native = NativeKernel("tiny", "tiny.c", Tiny, _checked_add([]))
    assert native.load() is None
    assert native.why_unavailable() == "NativeUnavailable: no C compiler (cc) on PATH"
    assert compiles == [] and not cache.exists()


def test_arm64_and_the_switch_give_their_reasons(cache, compiles, monkeypatch):
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    native = NativeKernel("tiny", "tiny.c", Tiny, _checked_add([]))
    assert native.load() is None
    assert native.why_unavailable().startswith("NativeUnavailable: no build for ")
    assert native.why_unavailable().endswith(" on aarch64")
    monkeypatch.setenv("QWEN3TUI_CPU_KERNELS", "0")
    native = NativeKernel("tiny", "tiny.c", Tiny, _checked_add([]))
    assert native.load() is None
    assert native.why_unavailable() == "NativeUnavailable: turned off by QWEN3TUI_CPU_KERNELS=0"
    assert compiles == [] and not cache.exists()


@needs_compiler
def test_the_kernels_flags_and_the_strict_ones_reach_the_compiler(cache, compiles):
    def no_test(kernel: Answer) -> None:
        pass

    fortytwo = NativeKernel("answer", "answer.c", Answer, no_test, ("-DANSWER=42",))
    seven = NativeKernel("answer", "answer.c", Answer, no_test, ("-DANSWER=7",))
    assert fortytwo.load().answer() == 42 and seven.load().answer() == 7
    assert len(compiles) == 2 == len(set(compiles))  # other flags, another cache file
    # The tests' strict build: the unused variable is an error there, in one line.
    with pytest.raises(NativeUnavailable, match="compiling failed: .*error") as err:
        fortytwo.build(extra=STRICT)
    assert "\n" not in str(err.value)
