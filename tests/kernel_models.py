"""Random Qwen3 models built in memory for the GPU-kernel tests, and the fast decode step
against the plain one: what test_fast_decode, test_fp8_kernels, test_moe_kernels and
test_fast_prefill share."""

from __future__ import annotations

import torch

from qwen3tui.engine.config import Qwen3Config
from qwen3tui.engine.kv_cache import KVCache
from qwen3tui.engine.model import Qwen3


# Float64 references the kernel tests compare against.
def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    x = x.double()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight.double()


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return x * cos.double() + torch.cat((-x[..., half:], x[..., :half]), -1) * sin.double()


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    assert torch.isfinite(got).all(), "an output was left unwritten (NaN) or overflowed"
    return ((got.double() - want).norm() / want.norm()).item()


def dense_config(shape: tuple[int, int, int, int, int], layers: int) -> dict:
    """config.json keys of a dense Qwen3 of `shape`: (hidden, intermediate, query heads, KV
    heads, head_dim)."""
    hidden, inner, heads, kv, hd = shape
    return {
        "hidden_size": hidden,
        "intermediate_size": inner,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "head_dim": hd,
    }


def random_qwen3(config: dict, dtype: torch.dtype, device: str, positions: int) -> Qwen3:
    """A Qwen3 of `config` (over small defaults) with random weights (norms near 1), in
    `dtype` on `device`, set up as weights.load_model sets it up there."""
    config = Qwen3Config.from_dict(
        {
            "vocab_size": 1000,
            "max_position_embeddings": positions,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1e6,
            "tie_word_embeddings": True,
            "model_type": "qwen3",
            **config,
        }
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen3(config, positions)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0, 0.05)
    model.to(dtype)
    model.setup_rope(torch.device(device), dtype)
    for layer in model.layers:
        layer.matmul_attention = True
        layer.flash = device == "cuda" and dtype != torch.float32
    return model.eval()


def step_against_plain(model: Qwen3, prompt: int, steps: int, window: int, shapes=None):
    """(fast, plain) logits for `steps` tokens after a `prompt`-token prefill: FastDecoder
    (with GemvShape overrides `shapes`) against the plain decode step."""
    from qwen3tui.engine.fast_decode import FastDecoder

    device = model.rope_cos.device
    config = model.config
    ids = torch.randint(0, config.vocab_size, (1, prompt + steps), device=device)
    plain = KVCache(config, model.max_positions, device, model.rope_cos.dtype)
    fast = KVCache(config, model.max_positions, device, model.rope_cos.dtype)
    dec = FastDecoder(model, fast, shapes=shapes)
    out = []
    with torch.inference_mode():
        model(ids[:, :prompt], 0, plain)
        model(ids[:, :prompt], 0, fast)
        for p in range(prompt, prompt + steps):
            pos = torch.tensor([p], device=device)
            want = model.decode_step(ids[:, p : p + 1], pos, plain, window)[0, -1]
            got = dec(ids[:, p : p + 1], pos, window)
            out.append((got.clone(), want.clone()))
    return out
