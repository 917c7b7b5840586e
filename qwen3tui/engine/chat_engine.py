"""What the interface needs from an engine, as a protocol: the real `Engine`, the tests' fake
and the UI benchmark's scripted engine all provide it. Torch-free, like the UI."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from .events import Event
from .info import EngineInfo
from .options import ChatOptions, SamplingParams

Message = dict[str, str]


@runtime_checkable
class ChatEngine(Protocol):
    @property
    def info(self) -> EngineInfo: ...

    def count_tokens(self, messages: list[Message], thinking: bool) -> int: ...

    def sampling_for(self, options: ChatOptions) -> SamplingParams: ...

    def chat(
        self,
        messages: list[Message],
        options: ChatOptions | None = None,
        cancel: threading.Event | None = None,
        answer_now: threading.Event | None = None,  # set: end the thinking now, then answer
    ) -> Iterator[Event]: ...

    def prepare_next_turn(
        self, messages: list[Message], cancel: threading.Event | None = None
    ) -> int: ...

    def stop_warming(self) -> None: ...
