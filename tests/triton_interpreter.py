"""Run Triton kernels on the CPU: test code in a fresh Python with TRITON_INTERPRET=1."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch


def run_interpreted(test_file: str, code: str) -> None:
    """`code`, with the helpers of the test module `test_file`, in a fresh Python with
    TRITON_INTERPRET=1 (Triton reads it when first imported; here torch may have imported it
    already). Skips where Triton is missing (CI) or a GPU runs the kernels for real."""
    if importlib.util.find_spec("triton") is None:
        pytest.skip("Triton is not installed")
    if torch.cuda.is_available():
        pytest.skip("a CUDA machine runs the kernels for real (pytest -m cuda)")
    here = Path(test_file).resolve().parent
    path = [str(here), str(here.parent), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": os.pathsep.join(path)}
    script = f"from {Path(test_file).stem} import *\n{code}"
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
