"""Sessions as JSON (for scripts, export and import) and as Markdown (for people)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from .attachments import attachment_from_dict, fence_for, human_size, language_for
from .errors import ImportFormatError
from .models import ROLES, STATUSES, Message, Session

EXPORT_FORMAT = "qwen3tui-session"
# 2: the conversation is a tree: each message names its parent (`parent`, the `order` of an
# earlier message, or null) and the session its active leaf (`active_leaf`). Version 1 is one
# chain, each message following the one before it.
EXPORT_VERSION = 2


def message_to_dict(m: Message, parent: int | None = None) -> dict[str, Any]:
    return {
        "order": m.order,
        "parent": parent,
        "role": m.role,
        "content": m.content,
        "thinking": m.thinking,
        "status": m.outcome.value if m.role == "assistant" else m.status,
        "thinking_enabled": m.thinking_enabled,
        "budget": m.budget,
        "sampling": m.sampling,
        "usage": m.usage,
        "timings": m.timings,
        "error": m.error,
        "model": m.model,
        "created": m.created,
        "updated": m.updated,
        "attachments": [a.to_dict() for a in m.attachments],
    }


def session_to_dict(s: Session) -> dict[str, Any]:
    """The session object of `sessions show --json` (the active branch) and of an export (the
    whole tree). Messages refer to each other by `order`, their place in this list."""
    orders = {m.id: m.order for m in s.messages}
    return {
        "id": s.id,
        "title": s.title,
        "created": s.created,
        "updated": s.updated,
        "model": s.model,
        "system_prompt": s.system_prompt,
        "settings": s.settings,
        "message_count": len(s.messages),
        "active_leaf": orders.get(s.active_leaf) if s.active_leaf is not None else None,
        "messages": [message_to_dict(m, orders.get(m.parent_id)) for m in s.messages],
    }


def export_json(s: Session) -> dict[str, Any]:
    return {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "session": session_to_dict(s)}


def export_markdown(s: Session) -> str:
    lines = [
        f"# {s.title or 'Untitled session'}",
        "",
        f"- Session: `{s.id}`",
        f"- Model: `{s.model}`",
        f"- Created: {s.created}",
        f"- Updated: {s.updated}",
        "",
    ]
    if s.system_prompt:
        lines += [
            "**System prompt:**",
            "",
            *(f"> {line}" for line in s.system_prompt.splitlines()),
            "",
        ]
    for m in s.messages:
        # Other versions (/retry, edits) are in the JSON export; here the reader learns of them.
        version = (
            [f"*Version {m.sibling_position} of {m.sibling_count}*", ""]
            if m.sibling_count > 1
            else []
        )
        if m.role == "user":
            lines += ["## User", "", *version, m.content, ""]
            for a in m.attachments:
                # The chip as the chat shows it, then the file in a fence that its text cannot
                # close early.
                fence = fence_for(a.text)
                body = a.text if a.text.endswith("\n") or not a.text else a.text + "\n"
                lines += [f"**Attached:** `{a.name}` · {human_size(a.size)} · {a.lines:,} lines"]
                lines += ["", f"{fence}{language_for(a.name)}", body + fence, ""]
            continue
        heading = "## Assistant"
        if m.model and m.model != s.model:  # replies of a model switched to mid-conversation
            heading += f" — {m.model}"
        if m.outcome.label:
            heading += f" ({m.outcome.label})"
        lines += [heading, "", *version]
        if m.thinking:
            # A literal closing tag inside the reasoning would end the block early.
            thinking = m.thinking.replace("</details>", "&lt;/details>")
            lines += [
                "<details>",
                "<summary>Thinking</summary>",
                "",
                thinking,
                "",
                "</details>",
                "",
            ]
        lines += [m.content, ""]
        if m.error:
            lines += [f"> Error: {m.error}", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _require(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise ImportFormatError(f"not a qwen3tui session export: {where} {what}")


def _optional_int(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


# -- reading an export: all of it is checked before anything is written ------------------

# Free-form objects (settings, sampling, usage, timings) are shallow in every export qwen3tui
# writes; a cap keeps a hostile file from exhausting the stack where the JSON is read again.
MAX_NESTING = 32
_INT64 = 2**63  # what an SQLite INTEGER column holds
_INT_BITS64 = 2**64  # no value qwen3tui writes is wider (a seed may use all 64 bits)
# The generation values an export may carry and their types. `check_value` (see
# validate_export) adds the ranges; only the glue knows them (the store imports no engine).
GENERATION_VALUES: dict[str, type] = {
    "temperature": float,
    "top_p": float,
    "top_k": int,
    "min_p": float,
    "presence_penalty": float,
    "seed": int,
    "max_tokens": int,
    "thinking_budget": int,
}
CheckValue = Callable[[str, Any], object]


def load_export(text: str, source: str = "the file") -> Any:
    """Parse an export's JSON text; ImportFormatError (one line) when it is not usable JSON.

    NaN and Infinity, which Python's json accepts but JSON does not, are refused here, and so
    is nesting too deep to parse.
    """

    def no_constant(word: str) -> Any:
        raise ImportFormatError(f"{source} holds {word}, which is not a JSON number")

    try:
        return json.loads(text, parse_constant=no_constant)
    except json.JSONDecodeError as err:
        raise ImportFormatError(f"{source} is not JSON ({err.msg} at line {err.lineno})") from None
    except RecursionError:
        raise ImportFormatError(f"{source} is nested too deeply to be a session export") from None
    except ValueError as err:  # e.g. an integer with more digits than Python will read
        raise ImportFormatError(f"{source} is not usable JSON ({err})") from None


def validate_export(data: Any, *, check_value: CheckValue | None = None) -> None:
    """Check an export (as loaded from JSON) completely; ImportFormatError (one line) if bad.

    Structure and types first (what `parse_export` needs), then every value in it: text must be
    storable as UTF-8 (no lone surrogates), numbers finite, integers within SQLite's range, free-
    form objects at most MAX_NESTING deep, and generation values (sampling, budget, max tokens)
    numbers of the right type. `check_value(name, value)` is then called for each generation
    value (name from GENERATION_VALUES) and may raise any exception whose message is one line
    saying what is allowed; the import is refused with that message.
    """
    _check_values(data)
    _check_structure(data)
    session = data["session"]
    settings = session.get("settings", {})
    if "thinking" in settings:
        _require(
            isinstance(settings["thinking"], bool),
            "session.settings.thinking",
            "must be true/false",
        )
    # "budget" is what sessions saved before the settings schema called it "thinking_budget".
    named = {"thinking_budget": "thinking_budget", "budget": "thinking_budget"}
    for key, name in {**named, "max_tokens": "max_tokens"}.items():
        if key in settings:
            _generation(f"session.settings.{key}", name, settings[key], check_value)
    _sampling(settings.get("sampling"), "session.settings.sampling", check_value)
    for i, m in enumerate(session["messages"]):
        where = f"session.messages[{i}]"
        _generation(f"{where}.budget", "thinking_budget", m.get("budget"), check_value)
        _sampling(m.get("sampling"), f"{where}.sampling", check_value)


def _sampling(sampling: Any, where: str, check_value: CheckValue | None) -> None:
    if sampling is None:
        return
    _require(isinstance(sampling, dict), where, "must be an object")
    for key, value in sampling.items():
        if key in GENERATION_VALUES:
            _generation(f"{where}.{key}", key, value, check_value)


def _generation(where: str, name: str, value: Any, check_value: CheckValue | None) -> None:
    """One generation value: null (the default) or a finite number of its type."""
    if value is None:
        return
    kind = GENERATION_VALUES[name]
    if kind is int:
        _require(
            isinstance(value, int) and not isinstance(value, bool), where, "must be a whole number"
        )
    else:
        _require(
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value),
            where,
            "must be a finite number",
        )
    if check_value is not None:
        try:
            check_value(name, value)
        except Exception as err:  # noqa: BLE001 -- the checker's own one-line reason
            reason = " ".join(str(err).split()) or "is out of range"
            raise ImportFormatError(f"cannot import: {where}: {reason}") from None


def _check_values(data: Any) -> None:
    """Every string, number and object in `data`, without recursion (the input may be deep)."""
    stack: list[tuple[Any, str, int]] = [(data, "the top level", 0)]
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, str):
            _require(
                _is_utf8(value), where, "holds text that is not valid Unicode (a lone surrogate)"
            )
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            _require(-_INT_BITS64 < value < _INT_BITS64, where, "is a number too large to store")
        elif isinstance(value, float):
            _require(math.isfinite(value), where, "must be a finite number")
        elif isinstance(value, dict | list):
            _require(depth < MAX_NESTING, where, f"nests more than {MAX_NESTING} levels deep")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    _require(_is_utf8(key), where, "has a key that is not valid Unicode")
                    inner = f"{where}.{key}" if where != "the top level" else key
                else:
                    inner = f"{where}[{key}]"
                stack.append((item, inner, depth + 1))
        else:
            _require(False, where, f"holds a {type(value).__name__}, which JSON has not")


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_structure(data: Any) -> None:
    _require(isinstance(data, dict), "the top level", "must be a JSON object")
    _require(data.get("format") == EXPORT_FORMAT, "`format`", f"must be {EXPORT_FORMAT!r}")
    version = data.get("version")
    _require(
        isinstance(version, int)
        and not isinstance(version, bool)
        and 1 <= version <= EXPORT_VERSION,
        "`version`",
        f"must be 1..{EXPORT_VERSION} (got {version!r}; is it from a newer qwen3tui?)",
    )
    s = data.get("session")
    _require(isinstance(s, dict), "`session`", "must be an object")
    for key in ("title", "created", "updated", "model"):
        _require(isinstance(s.get(key), str), f"session.{key}", "must be a string")
    _require(
        s.get("system_prompt") is None or isinstance(s["system_prompt"], str),
        "session.system_prompt",
        "must be a string or null",
    )
    _require(isinstance(s.get("settings", {}), dict), "session.settings", "must be an object")
    _require(isinstance(s.get("messages"), list), "session.messages", "must be an array")
    for i, m in enumerate(s["messages"]):
        where = f"session.messages[{i}]"
        _require(isinstance(m, dict), where, "must be an object")
        if "parent" in m:  # (version 2 on; a message without one follows the one before)
            parent = m["parent"]
            _require(
                parent is None or (_optional_int(parent) and 0 <= parent < i),
                f"{where}.parent",
                "must be the place of an earlier message, or null",
            )
        _require(m.get("role") in ROLES, f"{where}.role", "must be 'user' or 'assistant'")
        _require(
            m.get("status", "complete") in STATUSES,
            f"{where}.status",
            f"must be one of {', '.join(STATUSES)}",
        )
        for key in ("content", "created", "updated"):
            _require(isinstance(m.get(key), str), f"{where}.{key}", "must be a string")
        _require(isinstance(m.get("thinking", ""), str), f"{where}.thinking", "must be a string")
        for key in ("sampling", "usage", "timings"):
            _require(isinstance(m.get(key, {}), dict), f"{where}.{key}", "must be an object")
        _require(
            m.get("thinking_enabled") in (None, True, False),
            f"{where}.thinking_enabled",
            "must be true, false or null",
        )
        budget = m.get("budget")
        _require(_optional_int(budget), f"{where}.budget", "must be an integer or null")
        _require(
            budget is None or -_INT64 <= budget < _INT64,
            f"{where}.budget",
            "is a number too large to store",
        )
        for key in ("error", "model"):
            _require(
                m.get(key) is None or isinstance(m[key], str),
                f"{where}.{key}",
                "must be a string or null",
            )
        attachments = m.get("attachments", [])
        _require(isinstance(attachments, list), f"{where}.attachments", "must be an array")
        _require(
            not attachments or m["role"] == "user",
            f"{where}.attachments",
            "are only allowed on a user message",
        )
        for j, item in enumerate(attachments):
            try:
                attachment_from_dict(item)
            except ValueError as err:
                _require(False, f"{where}.attachments[{j}]", f"is not valid: {err}")
    if "active_leaf" in s:
        leaf = s["active_leaf"]
        _require(
            leaf is None or (_optional_int(leaf) and 0 <= leaf < len(s["messages"])),
            "session.active_leaf",
            "must be the place of one of its messages, or null",
        )


def parse_export(data: Any, *, check_value: CheckValue | None = None) -> Session:
    """Validate an export (as loaded from JSON) and return it as a Session (id left empty).

    Raises ImportFormatError (one line) before anything is built; see `validate_export`.
    """
    validate_export(data, check_value=check_value)
    s = data["session"]
    # Ids here are places in the list (the store gives new ones). A message without `parent`
    # (all of version 1) follows the one before it; without `active_leaf` the last is active.
    messages = [
        Message(
            id=i,
            parent_id=m["parent"] if "parent" in m else (i - 1 if i else None),
            session_id="",
            order=i,
            role=m["role"],
            content=m["content"],
            thinking=m.get("thinking", ""),
            status=m.get("status", "complete"),
            thinking_enabled=m.get("thinking_enabled"),
            budget=m.get("budget"),
            sampling=m.get("sampling", {}),
            usage=m.get("usage", {}),
            timings=m.get("timings", {}),
            created=m["created"],
            updated=m["updated"],
            error=m.get("error"),
            model=m.get("model"),
            attachments=[attachment_from_dict(a) for a in m.get("attachments", [])],
        )
        for i, m in enumerate(s["messages"])
    ]
    return Session(
        id="",
        title=s["title"],
        created=s["created"],
        updated=s["updated"],
        model=s["model"],
        system_prompt=s.get("system_prompt"),
        settings=s.get("settings", {}),
        messages=messages,
        active_leaf=s["active_leaf"]
        if "active_leaf" in s
        else len(messages) - 1
        if messages
        else None,
    )
