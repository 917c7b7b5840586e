"""Keep control-token strings typed into messages as plain text (no forged chat turns).

A tokenizer turns every added-token string into its control id wherever it appears, so a
message containing "<|im_end|>\\n<|im_start|>system\\n..." would close the user's turn and open a
system turn the user wrote. Before the template renders, each such string inside a message is
replaced by an escape: two private-use characters that templates pass through untouched (their
strip/split/startswith calls never touch them). The tokenizer then encodes the stretches holding
escapes as ordinary text, while the markup the template writes itself stays special.

The one exception: `<think>` and `</think>` inside an assistant message's content. The official
template reads them there to drop earlier reasoning, so they stay as written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

ESCAPE = "\U0010fffd"  # the last private-use code point; a typed one is escaped too
_CODE_BASE = 0xF0000  # one private-use code per protected string
REASONING_DELIMITERS = ("<think>", "</think>")


class ContentEscaper:
    """Escapes protected strings in message fields and restores them after rendering."""

    def __init__(self, protected: Iterable[str]) -> None:
        # Longest first, so a regex alternation matches leftmost-longest as tokenizers do.
        unique = {s for s in protected if s and ESCAPE not in s}
        self.protected = sorted(unique, key=lambda s: (-len(s), s))
        if len(self.protected) > 0xFFFD:
            raise ValueError("too many protected strings")
        self._code = {s: ESCAPE + chr(_CODE_BASE + i) for i, s in enumerate(self.protected)}
        self._code[ESCAPE] = ESCAPE + ESCAPE
        self._original = {chr(_CODE_BASE + i): s for i, s in enumerate(self.protected)}
        self._original[ESCAPE] = ESCAPE
        self._all = _alternation([*self.protected, ESCAPE])
        kept = [s for s in self.protected if s not in REASONING_DELIMITERS]
        self._except_reasoning = _alternation([*kept, ESCAPE])

    def escape(self, text: str, *, keep_reasoning_delimiters: bool = False) -> str:
        pattern = self._except_reasoning if keep_reasoning_delimiters else self._all
        return pattern.sub(lambda m: self._code[m.group(0)], text)

    def escape_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A copy of `messages` with every string escaped (nested values included)."""
        escaped = []
        for message in messages:
            copy = {key: self._escape_value(value) for key, value in message.items()}
            if message.get("role") == "assistant" and isinstance(message.get("content"), str):
                copy["content"] = self.escape(message["content"], keep_reasoning_delimiters=True)
            escaped.append(copy)
        return escaped

    def _escape_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.escape(value)
        if isinstance(value, Mapping):
            return {key: self._escape_value(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._escape_value(item) for item in value]
        return value

    def unescape(self, text: str) -> str:
        """The text with every escape restored (a stray ESCAPE is left as it is)."""
        if ESCAPE not in text:
            return text
        return _ESCAPED.sub(lambda m: self._original.get(m.group(1), m.group(0)), text)


_ESCAPED = re.compile(re.escape(ESCAPE) + "(.)", re.DOTALL)


def _alternation(strings: list[str]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(s) for s in strings))


def has_escapes(text: str) -> bool:
    return ESCAPE in text
