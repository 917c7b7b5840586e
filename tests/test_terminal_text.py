"""Stored or generated text cannot drive the terminal: every control character is shown, not run."""

from __future__ import annotations

import json

import pytest

from qwen3tui.terminal_text import json_for_terminal, neutralize

# Every way a sequence can start: ESC (CSI, OSC, DCS, a lone ESC), the one-character C1 forms,
# and the other C0 controls (BEL ends an OSC, CR overwrites a line, BS erases, NUL).
HOSTILE = [
    "\x1b]0;PWNED\x07",  # OSC: set the window title
    "\x1b[2J",  # CSI: clear the screen
    "\x1bP1$r\x1b\\",  # DCS ... ST
    "\x1b]52;c;ZXZpbA==\x1b\\",  # OSC 52: write the clipboard
    "\x9b2J",  # C1 CSI
    "\x9d0;x\x9c",  # C1 OSC ... ST
    "safe\rEVIL",  # CR: overwrite what was shown
    "a\x08\x08b",  # BS
    "\x00\x7f\x05",  # NUL, DEL, ENQ (answerback)
]


def controls(text: str) -> list[str]:
    """The control characters left, other than newline and tab."""
    return [c for c in text if (ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F]


@pytest.mark.parametrize("text", HOSTILE)
def test_no_control_character_reaches_the_terminal(text: str) -> None:
    shown = neutralize(f"before {text} after")
    assert controls(shown) == []
    assert shown.startswith("before ") and shown.endswith(" after")


def test_the_user_still_sees_that_something_was_there() -> None:
    assert neutralize("\x1b[2Jhi") == "\u241b[2Jhi"  # ␛[2Jhi
    assert neutralize("\x07") == "\u2407"  # ␇
    assert neutralize("\x9b") == "<U+009B>"


def test_ordinary_text_is_unchanged() -> None:
    text = "Line one\n\tindented — ünïcödé ✓ 中文 🙂\nend"
    assert neutralize(text) == text
    assert neutralize("windows\r\nline ends\r\n") == "windows\nline ends\n"


def test_streamed_text_can_be_neutralized_chunk_by_chunk() -> None:
    text = "".join(HOSTILE) + "plain text"
    chunks = [text[i : i + 3] for i in range(0, len(text), 3)]
    assert "".join(neutralize(c) for c in chunks) == neutralize(text)


def test_json_for_terminal_is_the_same_data_with_no_raw_control_character() -> None:
    value = {"title": "".join(HOSTILE), "n": [1, 2.5, None, True], "ü": "✓"}
    text = json_for_terminal(value)
    assert controls(text.replace("\n", "")) == []
    assert json.loads(text) == value
    assert "✓" in text  # non-ASCII text stays readable
