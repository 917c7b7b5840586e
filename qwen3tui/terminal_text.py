"""Making stored or generated text safe to print to a terminal.

A prompt or a model reply can hold terminal control sequences (`ESC ] 0 ; title BEL` sets the
window title, `ESC [ 2 J` clears the screen, some terminals answer queries into their input).
Every such sequence starts with a control character: ESC, or a C1 control (U+0080-U+009F, e.g.
U+009B is a one-character CSI). `neutralize` replaces each control character except
newline and tab with a visible stand-in, so no sequence can start and the user still sees that
something was there. It works character by character, so streamed text can be made safe chunk by
chunk with the same result.
"""

from __future__ import annotations

import json
from typing import Any

_TAB, _NEWLINE, _DEL = 0x09, 0x0A, 0x7F


def _stand_in(code: int) -> str:
    if code < 0x20:
        return chr(0x2400 + code)  # Unicode's "control pictures": ␛ for ESC, ␇ for BEL
    if code == _DEL:
        return "\u2421"  # ␡
    return f"<U+{code:04X}>"  # C1 controls have no pictures


_TABLE = {
    code: _stand_in(code)
    for code in (*range(0x20), _DEL, *range(0x80, 0xA0))
    if code not in (_TAB, _NEWLINE)
}
# In JSON the same characters stay exact: escaped, so the output is still the same data.
_JSON_TABLE = {code: f"\\u{code:04x}" for code in (_DEL, *range(0x80, 0xA0))}


def neutralize(text: str) -> str:
    """`text` with every control character but newline and tab shown as a harmless stand-in.

    Windows line ends (CR LF) become plain newlines first, so ordinary text looks unchanged.
    """
    return text.replace("\r\n", "\n").translate(_TABLE)


def json_for_terminal(value: Any, *, indent: int | None = 2) -> str:
    """`value` as JSON (non-ASCII text kept readable) with no raw control character in it.

    `json` escapes C0 controls itself but writes DEL and the C1 controls raw; they are escaped
    here too, which is still valid JSON meaning exactly the same data.
    """
    return json.dumps(value, ensure_ascii=False, indent=indent).translate(_JSON_TABLE)
