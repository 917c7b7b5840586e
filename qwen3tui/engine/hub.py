"""Turn a model argument (local directory or Hugging Face id) into a local directory.

Hub downloads go through huggingface_hub, so the normal cache, HF_HOME and HF_HUB_OFFLINE apply,
and only the files the engine reads are fetched.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from .errors import ModelNotFoundError
from .info import LoadProgress

NEEDED_FILES = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "model.safetensors.index.json",
    "*.safetensors",
]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_model_dir(model: str, progress: Callable[[LoadProgress], None] | None = None) -> Path:
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelNotFoundError(
            f"{model} is a file, not a model directory.",
            "Point --model at the checkpoint's folder.",
        )
    if not _HUB_ID.match(model) or model.startswith((".", "/", "~")):
        raise ModelNotFoundError(
            f"model directory {model} does not exist.",
            "Check the path, or give a Hugging Face id such as Qwen/Qwen3-1.7B.",
        )
    return Path(download(model, progress))


def download(repo_id: str, progress: Callable[[LoadProgress], None] | None = None) -> str:
    # Imported here: huggingface_hub is only needed when a hub id is given.
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        return snapshot_download(
            repo_id, allow_patterns=NEEDED_FILES, tqdm_class=_progress_bar_class(progress)
        )
    except GatedRepoError:
        raise ModelNotFoundError(
            f"{repo_id} is gated on the Hugging Face Hub.",
            "Accept its terms on huggingface.co and run `hf auth login`.",
        ) from None
    except RepositoryNotFoundError:
        raise ModelNotFoundError(
            f"{repo_id} is neither a local directory nor a model on the Hugging Face Hub.",
            "Check the spelling, e.g. Qwen/Qwen3-1.7B.",
        ) from None
    except LocalEntryNotFoundError:
        raise ModelNotFoundError(
            f"{repo_id} is not in the local Hugging Face cache and the Hub cannot be reached"
            " (offline or HF_HUB_OFFLINE=1).",
            "Connect once to download it, or pass --model with a local directory.",
        ) from None
    except (HfHubHTTPError, OSError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelNotFoundError(
            f"downloading {repo_id} failed ({first}).",
            "Check the network and disk space, then retry.",
        ) from None


def _progress_bar_class(progress: Callable[[LoadProgress], None] | None):
    """A tqdm class that reports byte counts to `progress` instead of drawing to the terminal."""
    from huggingface_hub.utils import tqdm as hf_tqdm

    class ReportingBar(hf_tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self._bytes = kwargs.get("unit") == "B"
            self.n = kwargs.get("initial", 0) or 0

        def update(self, n=1):
            self.n += n or 0
            if progress and self._bytes:
                progress(LoadProgress("download", int(self.n), int(self.total or 0), "downloading"))

    return ReportingBar
