"""The benchmark's output: machine description, the Markdown table, the correctness line."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def machine(device: str) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "transformers": _version("transformers"),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name()
        out["cuda"] = torch.version.cuda
    return out


def git_commit() -> str:
    """HEAD's short hash, '+dirty' when the engine has uncommitted changes; 'unknown' off git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        )
        if head.returncode != 0:
            return os.environ.get("QWEN3TUI_COMMIT", "unknown")
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "qwen3tui"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except OSError:
        return os.environ.get("QWEN3TUI_COMMIT", "unknown")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


# -- table ---------------------------------------------------------------------------------


def table(rows: list[dict[str, Any]], prompt_lens: list[int]) -> str:
    """Markdown table; one row per engine result (or its error)."""
    lens = [str(n) for n in prompt_lens]
    head = ["engine"]
    for n in lens:
        head += [f"prefill tok/s @{n}", f"TTFT @{n}"]
    head += ["decode tok/s", "% of ceiling", "peak memory", "load"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["label"]]
        if "error" in r:
            cells += [f"failed: {_short(r['error'])}"] + [""] * (len(head) - 2)
            lines.append("| " + " | ".join(cells) + " |")
            continue
        for n in lens:
            p = r.get("prefill", {}).get(n)
            cells += [_num(p["prefill_tok_s"]), _secs(p["ttft_s"])] if p else ["", ""]
        d = r.get("decode", {})
        rate = d.get("decode_tok_s")
        decode = _num(rate)
        if d and d.get("tokens") != d.get("wanted"):
            decode += f" ({d.get('tokens')} tok)"
        cells += [
            decode,
            f"{100 * rate / r['ceiling_tok_s']:.0f}%" if rate and r.get("ceiling_tok_s") else "",
            _bytes(r.get("peak_bytes")),
            _secs(r.get("load_s")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _num(x: float | None) -> str:
    if x is None:
        return ""
    return f"{x:.1f}" if x < 100 else f"{x:.0f}"


def _secs(x: float | None) -> str:
    if x is None:
        return ""
    return f"{x * 1000:.1f} ms" if x < 1 else f"{x:.2f} s"


def _bytes(x: int | None) -> str:
    return "" if x is None else f"{x / 1e9:.2f} GB"


# -- correctness ---------------------------------------------------------------------------


def compare(
    ours: list[int], reference: list[int], ours_logits: str | None, ref_logits: str | None
) -> dict[str, Any]:
    """Greedy agreement (leading tokens equal) and logit difference at the last prompt position."""
    agree = 0
    for a, b in zip(ours, reference, strict=False):
        if a != b:
            break
        agree += 1
    out: dict[str, Any] = {
        "agree": agree,
        "ours_tokens": len(ours),
        "reference_tokens": len(reference),
        "identical": ours == reference,
    }
    if ours_logits and ref_logits and Path(ours_logits).exists() and Path(ref_logits).exists():
        import torch

        a, b = torch.load(ours_logits), torch.load(ref_logits)
        if a.shape == b.shape:
            top2 = b.topk(2).values
            out["max_abs_logit_diff"] = float((a - b).abs().max())
            out["reference_logit_range"] = float(b.max() - b.min())
            out["reference_top1_margin"] = float(top2[0] - top2[1])
            out["same_argmax"] = bool(a.argmax() == b.argmax())
    return out


def correctness_line(check: dict[str, Any] | None, reason: str = "") -> str:
    if check is None:
        return f"correctness: not checked ({reason})"
    n = max(check["ours_tokens"], check["reference_tokens"])
    verdict = "PASS" if check["identical"] else "DIFFER"
    line = (
        f"correctness ({check['label']}): greedy tokens {verdict}: first {check['agree']} of {n} "
        f"agree (ours {check['ours_tokens']}, reference {check['reference_tokens']} tokens)"
    )
    if "max_abs_logit_diff" in check:
        line += (
            f"; last-prompt-position logits max |diff| {check['max_abs_logit_diff']:.4f}"
            f" (reference range {check['reference_logit_range']:.2f},"
            f" top-1 margin {check['reference_top1_margin']:.4f},"
            f" same argmax: {'yes' if check['same_argmax'] else 'NO'})"
        )
    else:
        line += "; logits not compared"
    d = check.get("divergence")
    if d:
        line += (
            f"\n  first difference at step {d['step']}: ours {d['ours_token']}, reference"
            f" {d['reference_token']}; on the reference's logits our pick is"
            f" {d['ours_below_best']:.4f} below the best (reference top-1 margin there"
            f" {d['reference_top1_margin']:.4f}; a bf16 near-tie if both are a rounding step)"
        )
    return line
