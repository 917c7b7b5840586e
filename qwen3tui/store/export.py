"""Sessions as JSON (for scripts, export and import) and as Markdown (for people)."""

from __future__ import annotations

from typing import Any

from .errors import ImportFormatError
from .models import ROLES, STATUSES, Message, Session

EXPORT_FORMAT = "qwen3tui-session"
EXPORT_VERSION = 1


def message_to_dict(m: Message) -> dict[str, Any]:
    return {
        "order": m.order,
        "role": m.role,
        "content": m.content,
        "thinking": m.thinking,
        "status": m.status,
        "thinking_enabled": m.thinking_enabled,
        "budget": m.budget,
        "sampling": m.sampling,
        "usage": m.usage,
        "timings": m.timings,
        "error": m.error,
        "created": m.created,
        "updated": m.updated,
    }


def session_to_dict(s: Session) -> dict[str, Any]:
    """The session object of `sessions show --json` (and of an export)."""
    return {
        "id": s.id,
        "title": s.title,
        "created": s.created,
        "updated": s.updated,
        "model": s.model,
        "system_prompt": s.system_prompt,
        "settings": s.settings,
        "message_count": len(s.messages),
        "messages": [message_to_dict(m) for m in s.messages],
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
        if m.role == "user":
            lines += ["## User", "", m.content, ""]
            continue
        heading = "## Assistant"
        if m.status != "complete":
            heading += f" ({m.status})"
        lines += [heading, ""]
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


def parse_export(data: Any) -> Session:
    """Validate an export (as loaded from JSON) and return it as a Session (id left empty)."""
    _require(isinstance(data, dict), "the top level", "must be a JSON object")
    _require(data.get("format") == EXPORT_FORMAT, "`format`", f"must be {EXPORT_FORMAT!r}")
    version = data.get("version")
    _require(
        isinstance(version, int) and 1 <= version <= EXPORT_VERSION,
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
    messages = []
    for i, m in enumerate(s["messages"]):
        where = f"session.messages[{i}]"
        _require(isinstance(m, dict), where, "must be an object")
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
        _require(_optional_int(m.get("budget")), f"{where}.budget", "must be an integer or null")
        _require(
            m.get("error") is None or isinstance(m["error"], str),
            f"{where}.error",
            "must be a string or null",
        )
        messages.append(
            Message(
                id=0,
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
            )
        )
    return Session(
        id="",
        title=s["title"],
        created=s["created"],
        updated=s["updated"],
        model=s["model"],
        system_prompt=s.get("system_prompt"),
        settings=s.get("settings", {}),
        messages=messages,
    )
