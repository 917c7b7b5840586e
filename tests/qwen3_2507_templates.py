"""The single-mode 2507 chat templates, written from the real Qwen3-1.7B template and the facts in
shared/qwen3-family/README.md (the 2507 checkpoints themselves cannot be downloaded here):

- Thinking-2507: the generation prompt is "<|im_start|>assistant\\n<think>\\n" (the template opens
  the think block; the model writes its reasoning, then </think>);
- Instruct-2507: the generation prompt is "<|im_start|>assistant\\n", no `enable_thinking`.

Everything else (history rendering, reasoning dropped from earlier turns) is the real template.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

# The real template's last block: the generation prompt, with the hybrid thinking switch.
_GENERATION_PROMPT = re.compile(r"\{%- if add_generation_prompt %\}.*\Z", re.S)

THINKING_2507_PROMPT = "<|im_start|>assistant\\n<think>\\n"
INSTRUCT_2507_PROMPT = "<|im_start|>assistant\\n"


def real_template(shared_dir: Path) -> str:
    return json.loads((shared_dir / "tokenizer_config.json").read_text())["chat_template"]


def _with_generation_prompt(real: str, prompt: str) -> str:
    assert len(_GENERATION_PROMPT.findall(real)) == 1, "the real template changed shape"
    block = "{%- if add_generation_prompt %}\n    {{- '" + prompt + "' }}\n{%- endif %}\n"
    variant = _GENERATION_PROMPT.sub(lambda _: block, real)
    assert "enable_thinking" not in variant
    return variant


def thinking_2507_template(shared_dir: Path) -> str:
    return _with_generation_prompt(real_template(shared_dir), THINKING_2507_PROMPT)


def instruct_2507_template(shared_dir: Path) -> str:
    return _with_generation_prompt(real_template(shared_dir), INSTRUCT_2507_PROMPT)


def template_for(mode: str, shared_dir: Path) -> str:
    return {
        "hybrid": real_template,
        "thinking": thinking_2507_template,
        "instruct": instruct_2507_template,
    }[mode](shared_dir)


def checkpoint_with_template(checkpoint: Path, folder: Path, template: str) -> Path:
    """A copy of `checkpoint` (files linked, not copied) whose tokenizer_config.json holds
    `template` as its chat template."""
    folder.mkdir(parents=True, exist_ok=True)
    for item in checkpoint.iterdir():
        if item.name != "tokenizer_config.json":
            os.symlink(item, folder / item.name)
    config = json.loads((checkpoint / "tokenizer_config.json").read_text())
    config["chat_template"] = template
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder
