"""A tiny Qwen3 checkpoint whose output is scripted: a real server runs it and its stream is known.

Every decoder layer is zeroed (attention and MLP add nothing), so the last hidden state is the
current token's embedding; each chain token's embedding is its own unit vector, and an untied
`lm_head` maps it to the next token of the chain with a large logit. Whatever the sampling, the
model then continues any prompt that ends in a chain token along the chain.
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from qwen3tui.engine.random_checkpoint import TINY_CONFIG, write_random_checkpoint

# The generation prompt ends with "\n" (thinking on, after "assistant"; or our own "<think>\n")
# or "\n\n" (thinking off, after the empty think block).
CLOSING = [("\n", "<think>"), ("<think>", " Hmm"), (" Hmm", " ok"), (" ok", "</think>"),
           ("</think>", "\n\n"), ("\n\n", "Answer"), ("Answer", "<|im_end|>")]  # fmt: skip
# Thinks " Hmm ok Hmm ok…" forever: only the thinking budget's sentence (ending in "\n\n")
# gets it to answer.
ENDLESS = [("\n", "<think>"), ("<think>", " Hmm"), (" Hmm", " ok"), (" ok", " Hmm"),
           ("\n\n", "Answer"), ("Answer", "<|im_end|>")]  # fmt: skip
LOGIT = 10.0


def write_chain_checkpoint(
    out_dir: Path, tokenizer_dir: Path, chain: list[tuple[str, str]]
) -> Path:
    config = dict(TINY_CONFIG, tie_word_embeddings=False)
    out = write_random_checkpoint(out_dir, config=config, tokenizer_dir=tokenizer_dir)
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))

    def token_id(text: str) -> int:
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        assert len(ids) == 1, f"{text!r} is not one token: {ids}"
        return ids[0]

    pairs = [(token_id(a), token_id(b)) for a, b in chain]
    slots = {tid: slot for slot, tid in enumerate(sorted({t for pair in pairs for t in pair}))}
    assert len(slots) <= config["hidden_size"]
    weights = load_file(str(out / "model.safetensors"))
    for name, tensor in weights.items():
        if name.startswith("model.layers."):
            tensor.zero_()
    weights["model.norm.weight"].fill_(1.0)
    embed, head = weights["model.embed_tokens.weight"], weights["lm_head.weight"]
    embed.zero_()
    head.zero_()
    for tid, slot in slots.items():
        embed[tid, slot] = 1.0
    for current, following in pairs:
        head[following, slots[current]] = LOGIT
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out
