"""benchmarks/ab_step.py loads another revision's decode kernels beside this tree's: its
decoder launches its own kernel modules, never this tree's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))


def test_a_revisions_decoder_launches_that_revisions_kernels():
    pytest.importorskip("triton.language")
    from ab_step import load_revision
    from kernel_models import dense_config, random_qwen3

    from qwen3tui.engine.kernel_build import recording
    from qwen3tui.engine.kv_cache import KVCache

    base = load_revision("HEAD", prefix="ab_test_")
    model = random_qwen3(dense_config((256, 512, 4, 2, 64), 1), torch.float32, "cpu", 128)
    dec = base.FastDecoder(model, KVCache(model.config, 128, torch.device("cpu"), torch.float32))
    with recording() as launches:
        dec(torch.zeros((1, 1), dtype=torch.long), torch.zeros(1, dtype=torch.long), 64)
    modules = {item["kernel"].split(":")[0] for item in launches}
    assert modules == {"qwen3tui.engine.ab_test_triton_kernels"}
