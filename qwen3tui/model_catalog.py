"""The Qwen3 models on this machine: the Hugging Face cache and the folders the user added.

What `qwen3tui models` and the TUI's `/model` show, download and remove. Torch-free and
weight-free: each model is described from its config.json and its chat template only (the
thinking mode is what the template renders, as the engine decides it), so listing is instant
even with a 60 GB model in the cache. Downloads and deletions go through huggingface_hub, so
its cache, HF_HOME, HF_HUB_CACHE, HF_ENDPOINT and HF_HUB_OFFLINE apply.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from qwen3tui.engine.config import Qwen3Config
from qwen3tui.engine.errors import EngineError
from qwen3tui.engine.hub import NEEDED_FILES
from qwen3tui.engine.thinking_mode import thinking_mode_label

HUB_HOST = "huggingface.co"
PROBE_TIMEOUT_S = 10.0


class CatalogError(Exception):
    """A user-caused failure (unknown model, no network, bad folder): one line."""


@dataclass(frozen=True)
class ModelEntry:
    name: str  # what --model and /model take: the hub id, or the folder
    source: str  # "hub" (the Hugging Face cache) or "folder" (added with `models add`)
    path: str  # where config.json is
    size_bytes: int
    kind: str | None  # "dense" or "moe"; None when config.json cannot be read
    thinking_mode: str | None  # "hybrid", "thinking" or "instruct"; None when unknown
    dtype: str | None  # the checkpoint's weights: "bfloat16", "fp8", ...
    problem: str | None = None  # why it may not load, one line

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def mode_label(self) -> str:
        return thinking_mode_label(self.thinking_mode) if self.thinking_mode else "unknown"  # type: ignore[arg-type]


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (huggingface_hub reads it once,
    at import)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def describe(path: Path, name: str, source: str, size_bytes: int) -> ModelEntry:
    """One model from its folder: config.json and the chat template, never the weights."""
    try:
        raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as err:
        reason = (
            "no config.json" if isinstance(err, FileNotFoundError) else "config.json unreadable"
        )
        return ModelEntry(name, source, str(path), size_bytes, None, None, None, reason)
    try:
        config = Qwen3Config.from_dict(raw, str(path / "config.json"))
    except EngineError as err:
        return ModelEntry(name, source, str(path), size_bytes, None, None, None, err.problem)
    quant = raw.get("quantization_config")
    fp8 = isinstance(quant, dict) and quant.get("quant_method") == "fp8"
    dtype = "fp8" if fp8 else config.torch_dtype
    mode, problem = _thinking_mode(path)
    kind = "moe" if config.is_moe else "dense"
    return ModelEntry(name, source, str(path), size_bytes, kind, mode, dtype, problem)


def _thinking_mode(path: Path) -> tuple[str | None, str | None]:
    from qwen3tui.engine.chat_template import ChatTemplate  # jinja2: only when listing

    try:
        template = ChatTemplate.from_dir(path)
        mode, note = template.thinking_mode, template.thinking_mode_note
    except EngineError as err:
        return None, err.problem
    return (None, None) if note else (mode, None)


def is_qwen3(path: Path) -> bool:
    try:
        raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    archs = raw.get("architectures") if isinstance(raw, dict) else None
    archs = archs if isinstance(archs, list) else []
    return isinstance(raw, dict) and (
        raw.get("model_type") in ("qwen3", "qwen3_moe")
        or any(a in ("Qwen3ForCausalLM", "Qwen3MoeForCausalLM") for a in archs)
    )


def cached_models() -> list[ModelEntry]:
    """The Qwen3 checkpoints in the Hugging Face cache (other models there are left out)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        cache = scan_cache_dir(hub_cache_dir())
    except CacheNotFound:
        return []
    entries = []
    for repo in sorted(cache.repos, key=lambda r: r.repo_id.lower()):
        if repo.repo_type != "model" or not repo.revisions:
            continue
        newest = max(repo.revisions, key=lambda r: r.last_modified)
        if is_qwen3(newest.snapshot_path):
            entries.append(describe(newest.snapshot_path, repo.repo_id, "hub", repo.size_on_disk))
    return entries


def folder_models(model_dirs: tuple[str, ...] | list[str]) -> list[ModelEntry]:
    """The folders the user added, each listed even when it no longer holds a model (said why)."""
    entries = []
    for folder in model_dirs:
        path = Path(folder)
        if not path.is_dir():
            entries.append(ModelEntry(folder, "folder", folder, 0, None, None, None, "missing"))
            continue
        entries.append(describe(path, folder, "folder", _folder_size(path)))
    return entries


def list_models(model_dirs: tuple[str, ...] | list[str] = ()) -> list[ModelEntry]:
    return cached_models() + folder_models(model_dirs)


def _folder_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:
                pass  # a dangling link: nothing on disk
    return total


def find(name: str, entries: list[ModelEntry]) -> ModelEntry | None:
    """The listed model `name` means: its exact name, else the one whose hub id or folder ends
    with it ("Qwen3-1.7B" for "Qwen/Qwen3-1.7B"). None when none or several match."""
    wanted = name.strip().rstrip("/")
    exact = [e for e in entries if e.name.lower() == wanted.lower()]
    if exact:
        return exact[0]
    tail = [e for e in entries if e.name.lower().rstrip("/").endswith("/" + wanted.lower())]
    return tail[0] if len(tail) == 1 else None


def format_size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


# ----- the Hub -------------------------------------------------------------------------


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "on", "yes", "true")


def pull(repo_id: str) -> Path:
    """Download the files the engine reads (a progress bar on stderr); the snapshot folder.

    config.json comes first: a repository that is not a Qwen3 model is refused before any
    weights are fetched.
    """
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download

    if _offline():
        raise CatalogError(f"cannot reach {HUB_HOST}: HF_HUB_OFFLINE is set")
    endpoint = os.environ.get("HF_ENDPOINT") or None
    where = {"cache_dir": hub_cache_dir(), "endpoint": endpoint}
    with _hub_errors(repo_id):
        # One request without huggingface_hub's download retries: no network is one line
        # at once, not half a minute of backing off.
        HfApi(endpoint=endpoint).model_info(repo_id, timeout=PROBE_TIMEOUT_S)
        config = Path(hf_hub_download(repo_id, "config.json", **where))
        if not is_qwen3(config.parent):
            raise CatalogError(f"{repo_id} is not a Qwen3 model (see its config.json)")
        return Path(snapshot_download(repo_id, allow_patterns=NEEDED_FILES, **where))


@contextmanager
def _hub_errors(repo_id: str) -> Iterator[None]:
    """huggingface_hub's and the network's exceptions as one CatalogError line each."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        yield
    except CatalogError:
        raise
    except GatedRepoError:
        raise CatalogError(
            f"{repo_id} is gated: accept its terms on {HUB_HOST}, then `hf auth login`"
        ) from None
    except RepositoryNotFoundError:
        raise CatalogError(f"{repo_id} is not a model on {HUB_HOST}") from None
    except HFValidationError:
        raise CatalogError(f"{repo_id!r} is not a Hugging Face model id") from None
    except Exception as err:
        if isinstance(err, LocalEntryNotFoundError) or _is_connection_error(err):
            raise CatalogError(f"cannot reach {HUB_HOST}: {_first_line(_root(err))}") from None
        if isinstance(err, OSError) or type(err).__module__.startswith(
            ("huggingface_hub", "httpx")
        ):
            raise CatalogError(f"downloading {repo_id} failed: {_first_line(err)}") from None
        raise


def _root(err: BaseException) -> BaseException:
    while err.__cause__ is not None or err.__context__ is not None:
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    return err


def _is_connection_error(err: BaseException) -> bool:
    seen: BaseException | None = err
    while seen is not None:
        name = type(seen).__name__
        if "Connect" in name or "Timeout" in name or isinstance(seen, ConnectionError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def cached_repo_size(repo_id: str) -> int | None:
    """Bytes the repository takes in the cache; None when it is not there."""
    repo = _cached_repo(repo_id)
    return None if repo is None else repo.size_on_disk


def remove(repo_id: str) -> int:
    """Delete every cached revision of `repo_id` through huggingface_hub; bytes freed."""
    repo = _cached_repo(repo_id)
    if repo is None:
        raise CatalogError(f"{repo_id} is not in the Hugging Face cache ({hub_cache_dir()})")
    from huggingface_hub import scan_cache_dir

    strategy = scan_cache_dir(hub_cache_dir()).delete_revisions(
        *(r.commit_hash for r in repo.revisions)
    )
    try:
        strategy.execute()
    except OSError as err:
        raise CatalogError(f"could not delete {repo_id}: {err.strerror or err}") from None
    return strategy.expected_freed_size


def _cached_repo(repo_id: str) -> Any:
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        cache = scan_cache_dir(hub_cache_dir())
    except CacheNotFound:
        return None
    for repo in cache.repos:
        if repo.repo_type == "model" and repo.repo_id.lower() == repo_id.lower():
            return repo
    return None
