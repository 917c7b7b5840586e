"""What a server serves and which server it is, from `GET /v1/models` (and Ollama's version)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from .errors import RemoteError, RemoteModelNotFoundError, RequestRejectedError
from .http_client import ServerClient

# `owned_by` in /v1/models, as each server fills it.
_OWNERS = {
    "vllm": "vllm",
    "sglang": "sglang",
    "llamacpp": "llama.cpp",
    "llama.cpp": "llama.cpp",
    "tensorrt_llm": "tensorrt-llm",
    "trtllm": "tensorrt-llm",
    "library": "ollama",
    "ollama": "ollama",
}


@dataclass(frozen=True)
class ServedModel:
    id: str
    owned_by: str = ""
    root: str = ""  # vLLM/SGLang: the checkpoint it was loaded from (a hub id or a path)
    context_length: int = 0  # 0: the server does not say


@dataclass(frozen=True)
class ServerInfo:
    kind: str  # "vllm", "sglang", "llama.cpp", "tensorrt-llm", "ollama", or "openai" (unknown)
    models: tuple[ServedModel, ...]

    @property
    def model_ids(self) -> list[str]:
        return [m.id for m in self.models]

    def find(self, name: str | None) -> ServedModel:
        """The model called `name` (the first one when None); a clear error listing the
        served models otherwise."""
        if not self.models:
            if name is not None:
                return ServedModel(id=name)  # servers that load on demand list none at first
            raise RemoteModelNotFoundError(
                "the server lists no models.", "Load a model into it, or name one with --model."
            )
        if name is None:
            return self.models[0]
        for model in self.models:
            # Ollama adds ":latest" to a name given without a tag.
            if name in (model.id, model.id.removesuffix(":latest")):
                return model
        raise model_not_found(name, self.model_ids)


def model_not_found(name: str, served: list[str]) -> RemoteModelNotFoundError:
    shown = ", ".join(served[:10]) + (f" and {len(served) - 10} more" if len(served) > 10 else "")
    return RemoteModelNotFoundError(
        f"the server does not serve a model called {name!r}"
        + (f"; it serves: {shown}." if served else "; it lists none."),
        "Pass one of those with --model, or leave --model out for the first.",
    )


def _served_model(entry: dict[str, Any]) -> ServedModel | None:
    model_id = entry.get("id") or entry.get("name") or entry.get("model")
    if not isinstance(model_id, str) or not model_id:
        return None
    meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
    # vLLM/SGLang: max_model_len; llama.cpp: the context it runs with, else the trained one.
    context = (
        entry.get("max_model_len")
        or entry.get("context_length")
        or meta.get("n_ctx")
        or meta.get("n_ctx_train")
    )
    context = context if isinstance(context, int) and not isinstance(context, bool) else 0
    owned_by = entry.get("owned_by")
    root = entry.get("root")
    return ServedModel(
        id=model_id,
        owned_by=owned_by if isinstance(owned_by, str) else "",
        root=root if isinstance(root, str) else "",
        context_length=context,
    )


def discover(client: ServerClient, cancel: threading.Event | None = None) -> ServerInfo:
    """List the server's models and tell which server it is."""
    try:
        body = client.get_json(client.api_url("/models"), cancel)
    except RequestRejectedError as err:
        if getattr(err, "status", None) in (404, 405):
            raise RequestRejectedError(
                f"there is no OpenAI-compatible API at {client.display}"
                f" ({err.status} on {client.display}/models).",  # type: ignore[attr-defined]
                "Check --server: it usually ends in /v1, e.g. http://gpu-box:8000/v1.",
            ) from None
        raise
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise RequestRejectedError(
            f"{client.display}/models did not list models the OpenAI way.",
            "Check that --server points at an OpenAI-compatible API.",
        )
    models = tuple(m for m in (_served_model(e) for e in data if isinstance(e, dict)) if m)
    owners = {m.owned_by.lower() for m in models}
    kind = next((_OWNERS[o] for o in owners if o in _OWNERS), "")
    if not kind:
        kind = "ollama" if _is_ollama(client, cancel) else "openai"
    return ServerInfo(kind=kind, models=models)


def _is_ollama(client: ServerClient, cancel: threading.Event | None) -> bool:
    try:
        body = client.get_json(client.root_url("/api/version"), cancel)
    except RemoteError:
        return False
    return isinstance(body, dict) and isinstance(body.get("version"), str)
