"""Every engine the interface can be given speaks the same protocol: a method the UI starts
calling must exist on the real engine, the tests' fake and the UI benchmark's scripted one."""

from __future__ import annotations

import sys
from pathlib import Path

from fake_engine import FakeEngine

from qwen3tui.engine import ChatEngine, load_engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))


def test_the_real_engine_speaks_the_protocol(tiny_checkpoint):
    engine = load_engine(str(tiny_checkpoint), device="cpu", dtype="float32", context_length=256)
    assert isinstance(engine, ChatEngine)


def test_the_fake_and_the_benchmarks_scripted_engine_speak_it_too():
    from ui_stream import PacedEngine

    assert isinstance(FakeEngine(), ChatEngine)
    assert isinstance(PacedEngine(rate=10.0, answer_tokens=1, thinking_tokens=0), ChatEngine)


def test_an_engine_missing_a_method_does_not():
    class Partial:
        info = None

        def chat(self, messages, options=None, cancel=None):  # noqa: ANN001, ANN201
            return iter(())

    assert not isinstance(Partial(), ChatEngine)
