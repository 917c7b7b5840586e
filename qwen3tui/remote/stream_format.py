"""The two ways servers stream JSON: server-sent events (OpenAI API) and one object per line
(Ollama's native API). Both turn lines into JSON objects and reject what is not JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from .errors import MalformedStreamError

DONE = "[DONE]"


def sse_payloads(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The JSON object of each `data:` event; ends at `data: [DONE]` or the end of the lines.

    Comments (`: ping`, which some servers send to keep the connection open), `event:`, `id:`,
    `retry:` and unknown fields are skipped as the SSE standard says; an event's several
    `data:` lines are joined with newlines before parsing.
    """
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                payload = "\n".join(data)
                data = []
                if payload.strip() == DONE:
                    return
                yield _parse(payload)
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:  # a last event without its blank line
        payload = "\n".join(data)
        if payload.strip() != DONE:
            yield _parse(payload)


def ndjson_payloads(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """One JSON object per non-empty line."""
    for line in lines:
        if line.strip():
            yield _parse(line)


def _parse(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        shown = text.strip().replace("\n", " ")
        shown = shown if len(shown) <= 60 else shown[:59] + "…"
        raise MalformedStreamError(
            f"the server sent an event that is not a JSON object: {shown!r}.",
            "The partial reply was kept; check that --server is an OpenAI-compatible API.",
        )
    return value
