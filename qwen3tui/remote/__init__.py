"""qwen3tui as a client of a model server: vLLM, SGLang, TensorRT-LLM, llama.cpp, Ollama or
transformers serve. `connect_remote` returns a `RemoteEngine`, which speaks the same ChatEngine
protocol as the local engine. Torch-free: the UI may hold one."""

from __future__ import annotations

from .engine import RemoteEngine, connect_remote
from .errors import (
    AuthError,
    MalformedStreamError,
    RemoteError,
    RemoteModelNotFoundError,
    RequestRejectedError,
    ServerBusyError,
    ServerStreamError,
    ServerTimeoutError,
    ServerUnreachableError,
    StreamInterruptedError,
)
from .http_client import DEFAULT_KEY_VARS, RetryPolicy, Timeouts

__all__ = [
    "DEFAULT_KEY_VARS",
    "AuthError",
    "MalformedStreamError",
    "RemoteEngine",
    "RemoteError",
    "RemoteModelNotFoundError",
    "RequestRejectedError",
    "RetryPolicy",
    "ServerBusyError",
    "ServerStreamError",
    "ServerTimeoutError",
    "ServerUnreachableError",
    "StreamInterruptedError",
    "Timeouts",
    "connect_remote",
]
