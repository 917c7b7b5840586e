"""One streamed request to a server, as Pieces, with the request bodies each API takes.

Errors that reach the user are one line; a stream that ends before the server said the reply
was finished raises StreamInterruptedError after the pieces it did send, never a fake end.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from qwen3tui.engine.options import SamplingParams

from .errors import (
    MalformedStreamError,
    RequestCancelledError,
    ServerStreamError,
    StreamInterruptedError,
)
from .http_client import ServerClient
from .pieces import Piece, ollama_piece, openai_piece
from .reply_split import END_MARKERS
from .stream_format import ndjson_payloads, sse_payloads

# Fields beyond the OpenAI API that a strict server may refuse; dropped (and remembered) then.
OPTIONAL_FIELDS = (
    "chat_template_kwargs",
    "stream_options",
    "top_k",
    "min_p",
    "presence_penalty",
    "seed",
    "think",
)


def openai_sampling(sampling: SamplingParams) -> dict[str, Any]:
    body: dict[str, Any] = {
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "presence_penalty": sampling.presence_penalty,
    }
    if sampling.top_k > 0:
        body["top_k"] = sampling.top_k
    if sampling.min_p > 0:
        body["min_p"] = sampling.min_p
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    return body


def ollama_options(sampling: SamplingParams, max_tokens: int | None) -> dict[str, Any]:
    options = openai_sampling(sampling)
    if max_tokens is not None:
        options["num_predict"] = max_tokens
    return options


@dataclass
class Request:
    url: str
    body: dict[str, Any]
    ndjson: bool = False  # Ollama's native API streams one JSON object per line

    def without(self, name: str) -> Request:
        body = dict(self.body)
        body.pop(name, None)
        if isinstance(body.get("options"), dict):
            body["options"] = {k: v for k, v in body["options"].items() if k != name}
        return Request(self.url, body, self.ndjson)


@dataclass
class Stats:
    """What the server said about one request, and when its text came."""

    started: float
    first_at: float | None = None
    last_at: float | None = None
    finish_reason: str | None = None
    says_stop_reason: bool = False
    stop_reason: Any = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    prompt_tok_s: float | None = None
    decode_tok_s: float | None = None
    pieces: int = 0
    texts: list[str] = field(default_factory=list)  # the content pieces, raw

    def see(self, piece: Piece) -> None:
        if piece.reasoning or piece.content:
            now = time.perf_counter()
            self.first_at = self.first_at or now
            self.last_at = now
            self.pieces += 1
        if piece.content:
            self.texts.append(piece.content)
        if piece.finish_reason:
            self.finish_reason = piece.finish_reason
        if piece.says_stop_reason:
            self.says_stop_reason, self.stop_reason = True, piece.stop_reason
        for name in (
            "prompt_tokens",
            "completion_tokens",
            "reasoning_tokens",
            "prompt_tok_s",
            "decode_tok_s",
        ):
            value = getattr(piece, name)
            if value is not None:
                setattr(self, name, value)

    @property
    def ended_by_eos(self) -> bool:
        """The server says the model ended its turn (not a stop string, not a length)."""
        if self.finish_reason != "stop" or not self.says_stop_reason:
            return False
        return not isinstance(self.stop_reason, str) or self.stop_reason in END_MARKERS

    @property
    def text(self) -> str:
        return "".join(self.texts)


def stream_pieces(
    client: ServerClient, request: Request, cancel: threading.Event
) -> Iterator[Piece]:
    """The pieces of one streamed reply. Returns quietly when `cancel` is set."""
    try:
        stream = client.open("POST", request.url, request.body, cancel)
    except RequestCancelledError:
        return  # the caller sees `cancel` set and ends the reply as cancelled
    parse = ollama_piece if request.ndjson else openai_piece
    try:
        if stream.content_type == "application/json" and not request.ndjson:
            yield _whole_response(stream.read_all(), client.display)  # it ignored "stream"
            return
        lines = stream.lines(cancel)
        payloads = ndjson_payloads(lines) if request.ndjson else sse_payloads(lines)
        finished = counted = False
        for payload in payloads:
            piece = parse(payload)
            if piece.error:
                raise ServerStreamError(
                    f"the server stopped the reply with an error: {_one_line(piece.error)}",
                    "The partial reply was kept.",
                )
            finished = finished or piece.finish_reason is not None
            counted = counted or piece.completion_tokens is not None
            yield piece
            if finished and counted:
                return  # all there is to say: a server slow to close the stream is not waited for
        if not finished and not cancel.is_set():
            raise StreamInterruptedError(
                f"the server at {client.display} ended the stream before the reply was finished.",
                "The partial reply was kept; check the server's log, then retry.",
            )
    finally:
        stream.close()


def _whole_response(text: str, server: str) -> Piece:
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise MalformedStreamError(
            f"the server at {server} answered with something that is not a reply.",
            "Check that --server points at an OpenAI-compatible API.",
        )
    piece = openai_piece(payload)
    if piece.error:
        raise ServerStreamError(f"the server answered with an error: {_one_line(piece.error)}")
    return piece


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    first = lines[0] if lines else "(no message)"
    return first if len(first) <= 200 else first[:199] + "…"
