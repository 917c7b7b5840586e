"""Qwen3 tokenizer: a thin wrapper over the `tokenizers` library, plus streaming detokenization.

Every special id is read from the checkpoint's tokenizer files (tokenizer.json added tokens,
tokenizer_config.json, generation_config.json); none is hard-coded, only the token strings that
Qwen3's chat format is defined by.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from .content_escape import ContentEscaper, has_escapes
from .errors import ModelLoadError

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"
THINK_START = "<think>"
THINK_END = "</think>"

# Without these the chat format and the thinking split cannot work, so loading fails early.
_REQUIRED_TOKENS = (IM_START, IM_END, THINK_START, THINK_END)

REPLACEMENT_CHAR = "\ufffd"


def read_json_file(path: Path) -> dict[str, Any] | None:
    """A checkpoint's optional JSON file: None when absent, ModelLoadError when unreadable."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelLoadError(
            f"Cannot read {path}: {_first_line(err)}.",
            "Re-download the checkpoint (or delete the broken file from the folder).",
        ) from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} does not hold a JSON object.", "Re-download the checkpoint.")
    return data


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _token_content(value: Any) -> str | None:
    """tokenizer_config.json writes a special token as a string or as an AddedToken dict."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


_NAMED_SPECIAL_KEYS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)


def named_special_tokens(tokenizer_config: dict[str, Any] | None) -> dict[str, str]:
    """tokenizer_config.json's named special tokens as strings, e.g. {"eos_token": "<|im_end|>"}.

    transformers hands these to the chat template as variables, so our renderer does too.
    """
    named = {}
    for key in _NAMED_SPECIAL_KEYS:
        content = _token_content((tokenizer_config or {}).get(key))
        if content is not None:
            named[key] = content
    return named


def _as_id_list(value: Any) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
    return []


class Qwen3Tokenizer:
    """Encodes chat prompts and decodes generated ids exactly as transformers' Qwen2 tokenizer."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        tokenizer_config: dict[str, Any] | None = None,
        generation_config: dict[str, Any] | None = None,
        source: str = "<memory>",
    ) -> None:
        self._tok = tokenizer
        self._config = tokenizer_config or {}
        self._generation_config = generation_config or {}
        missing = [t for t in _REQUIRED_TOKENS if tokenizer.token_to_id(t) is None]
        if missing:
            raise ModelLoadError(
                f"The tokenizer in {source} lacks the Qwen3 tokens {', '.join(missing)}.",
                "Use a Qwen3 checkpoint (for example Qwen/Qwen3-1.7B).",
            )
        self._im_start_id = self.token_id(IM_START)
        self._im_end_id = self.token_id(IM_END)
        self._think_start_id = self.token_id(THINK_START)
        self._think_end_id = self.token_id(THINK_END)
        self._eos_token_ids = frozenset(self._find_eos_ids())
        self._pad_token_id = self._find_pad_id()

    @classmethod
    def from_dir(cls, path: str | Path) -> Qwen3Tokenizer:
        """Load tokenizer.json (required) and the optional tokenizer_config/generation_config."""
        folder = Path(path)
        tokenizer_file = folder / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise ModelLoadError(
                f"No tokenizer.json in {folder}.",
                "Use a checkpoint folder that includes the tokenizer files (tokenizer.json,"
                " tokenizer_config.json), e.g. download the full Hugging Face repo.",
            )
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as err:  # the Rust side raises plain Exception for any parse failure
            raise ModelLoadError(
                f"Cannot read {tokenizer_file}: {_first_line(err)}.",
                "Re-download the checkpoint's tokenizer.json.",
            ) from None
        return cls(
            tokenizer,
            tokenizer_config=read_json_file(folder / "tokenizer_config.json"),
            generation_config=read_json_file(folder / "generation_config.json"),
            source=str(folder),
        )

    # -- special tokens -------------------------------------------------------------------------

    def _config_token_id(self, key: str) -> int | None:
        content = _token_content(self._config.get(key))
        return None if content is None else self._tok.token_to_id(content)

    def _find_eos_ids(self) -> set[int]:
        ids = {self._im_end_id}
        for candidate in (self._tok.token_to_id(END_OF_TEXT), self._config_token_id("eos_token")):
            if candidate is not None:
                ids.add(candidate)
        ids.update(_as_id_list(self._generation_config.get("eos_token_id")))
        return ids

    def _find_pad_id(self) -> int:
        for candidate in (
            self._config_token_id("pad_token"),
            *_as_id_list(self._generation_config.get("pad_token_id"))[:1],
            self._tok.token_to_id(END_OF_TEXT),
        ):
            if candidate is not None:
                return candidate
        return self._im_end_id

    def token_id(self, token: str) -> int:
        """The id of one token string, e.g. "<think>". KeyError when the vocabulary lacks it."""
        found = self._tok.token_to_id(token)
        if found is None:
            raise KeyError(f"token {token!r} is not in the vocabulary")
        return found

    @property
    def im_start_id(self) -> int:
        return self._im_start_id

    @property
    def im_end_id(self) -> int:
        return self._im_end_id

    @property
    def think_start_id(self) -> int:
        return self._think_start_id

    @property
    def think_end_id(self) -> int:
        return self._think_end_id

    @property
    def eos_token_ids(self) -> frozenset[int]:
        """Ids that end a turn: <|im_end|>, <|endoftext|>, generation_config's eos_token_id."""
        return self._eos_token_ids

    @property
    def pad_token_id(self) -> int:
        return self._pad_token_id

    @property
    def vocab_size(self) -> int:
        """Ids the tokenizer knows, added tokens included (the model's embedding may be larger)."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def special_tokens(self) -> dict[str, str]:
        """The named special tokens of tokenizer_config.json (eos_token, pad_token, ...)."""
        return named_special_tokens(self._config)

    @property
    def backend(self) -> Tokenizer:
        """The underlying `tokenizers.Tokenizer`."""
        return self._tok

    # -- encode / decode ------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; special tokens written in it become their single ids; no BOS."""
        return self._tok.encode(text, add_special_tokens=False).ids

    @property
    def added_token_strings(self) -> list[str]:
        """Every added token's text (<|im_start|>, <think>, <tool_call>, ...): control strings."""
        return [added.content for added in self._tok.get_added_tokens_decoder().values()]

    @cached_property
    def content_escaper(self) -> ContentEscaper:
        """Escapes the added-token strings typed inside messages (see `encode_prompt`)."""
        return ContentEscaper(self.added_token_strings)

    @cached_property
    def _added_token_pattern(self) -> re.Pattern[str]:
        ordered = sorted(set(self.added_token_strings), key=lambda s: (-len(s), s))
        return re.compile("(" + "|".join(re.escape(s) for s in ordered) + ")")

    def encode_prompt(self, text: str) -> list[int]:
        """Token ids of a prompt rendered from escaped messages (`content_escaper`).

        Markup the template wrote becomes control ids; escaped strings from the messages are
        encoded as ordinary text. Without escapes this is exactly `encode`.
        """
        if not has_escapes(text):
            return self.encode(text)
        ids: list[int] = []
        # Split at the template's own control strings, as the tokenizer itself does first;
        # between them, a stretch holding escapes is encoded with no added tokens at all.
        for index, piece in enumerate(self._added_token_pattern.split(text)):
            if index % 2:
                ids.append(self.token_id(piece))
            elif has_escapes(piece):
                ids.extend(self._encode_plain(self.content_escaper.unescape(piece)))
            elif piece:
                ids.extend(self.encode(piece))
        return ids

    def _encode_plain(self, text: str) -> list[int]:
        # The tokenizer's own pipeline (normalize, pre-tokenize, BPE) minus added-token matching.
        normalizer, pre_tokenizer = self._tok.normalizer, self._tok.pre_tokenizer
        if normalizer is not None:
            text = normalizer.normalize_str(text)
        pieces = pre_tokenizer.pre_tokenize_str(text) if pre_tokenizer is not None else [(text, 0)]
        return [token.id for piece, _ in pieces for token in self._tok.model.tokenize(piece)]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def stream_decoder(self, skip_special_tokens: bool = False) -> StreamDecoder:
        return StreamDecoder(self, skip_special_tokens=skip_special_tokens)


class StreamDecoder:
    """Turns ids arriving one at a time into text, never splitting a multi-byte character.

    Byte-level BPE can cut one character (emoji, CJK) across tokens; a decode that ends inside such
    a character ends in U+FFFD. So the ids since the last clean character boundary are kept in a
    small window that is decoded again on each push, and a trailing U+FFFD is held back until the
    next token completes it (or `flush` gives up on it). Concatenating every push and the flush
    equals `tokenizer.decode(all ids)`.

    `tokenizers.decoders.DecodeStream` is not used: it has no flush, so a reply that ends inside a
    character loses the U+FFFD a full decode shows, and its held-back window is unbounded.
    """

    # The longest incomplete UTF-8 sequence is 3 bytes, and every token is at least one byte, so a
    # cut 4 tokens back from the end is already settled whatever comes next.
    _SETTLED_TAIL = 4
    _MAX_WINDOW = 16

    def __init__(self, tokenizer: Qwen3Tokenizer, skip_special_tokens: bool = False) -> None:
        self._tokenizer = tokenizer
        self._skip_special = skip_special_tokens
        self._window: list[int] = []
        self._emitted = 0  # characters of decode(window) already returned

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=self._skip_special)

    def push(self, token_id: int) -> str:
        """Add one id; return the text it completes (may be "")."""
        self._window.append(token_id)
        text = self._decode(self._window)
        if not text.endswith(REPLACEMENT_CHAR):
            new = text[self._emitted :]
            self._window.clear()
            self._emitted = 0
            return new
        # Everything before the trailing U+FFFD is final: an unfinished character can only be
        # the last thing in the bytes.
        new = text[self._emitted : -1]
        self._emitted = len(text) - 1
        if len(self._window) > self._MAX_WINDOW:
            self._shrink_window(text)
        return new

    @property
    def held_tokens(self) -> int:
        """Ids decoded again on the next push (normally 0 to 3)."""
        return len(self._window)

    def _shrink_window(self, text: str) -> None:
        # Only reached by byte garbage that never forms a character; keeps each push cheap.
        cut = len(self._window) - self._SETTLED_TAIL
        head = self._decode(self._window[:cut])
        if head + self._decode(self._window[cut:]) == text and len(head) <= self._emitted:
            del self._window[:cut]
            self._emitted -= len(head)

    def flush(self) -> str:
        """The held-back rest (U+FFFD for an unfinished character), as a full decode shows it."""
        text = self._decode(self._window)[self._emitted :] if self._window else ""
        self._window.clear()
        self._emitted = 0
        return text

    def reset(self) -> None:
        self._window.clear()
        self._emitted = 0
