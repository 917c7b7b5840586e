"""Stand-ins for model servers in the remote engine's tests.

`recorded_engine` connects a RemoteEngine to canned HTTP answers (httpx's mock transport, no
sockets): for replaying recorded streams. `ScriptedServer` is a real HTTP server on a free local
port whose answers a test scripts, including the bad ones: a connection dropped mid-stream, a
reply that never comes, a client that goes away.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from qwen3tui.remote import RetryPolicy, Timeouts, connect_remote
from qwen3tui.remote.engine import RemoteEngine
from qwen3tui.remote.http_client import httpx

FAST_RETRY = RetryPolicy(attempts=3, backoff_s=0.001, max_backoff_s=0.001)
SHORT_TIMEOUTS = Timeouts(connect_s=2.0, read_s=0.5)


def sse(*events: dict[str, Any] | str, done: bool = True) -> bytes:
    """A text/event-stream body: one `data:` event per item (a str is sent as it is)."""
    parts = [f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events]
    if done:
        parts.append("data: [DONE]\n\n")
    return "".join(parts).encode()


def ndjson(*objects: dict[str, Any]) -> bytes:
    return "".join(json.dumps(o) + "\n" for o in objects).encode()


def chat_chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    """A chat.completion.chunk as OpenAI-compatible servers stream them."""
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish, **extra}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [choice],
    }


def text_chunk(text: str, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish, **extra}
    return {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1,
        "model": "m",
        "choices": [choice],
    }


def usage_chunk(prompt: int, completion: int, **details: int) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if details:
        usage["completion_tokens_details"] = details
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": usage}


def models_list(*ids: str, owned_by: str = "vllm", **extra: Any) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": i, "object": "model", "owned_by": owned_by, **extra} for i in ids],
    }


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/event-stream"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, obj: Any, status: int = 200, **headers: str) -> Answer:
        return cls(status, json.dumps(obj).encode(), "application/json", dict(headers))


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class Recorded:
    """Canned answers per path, taken in order (the last one repeats)."""

    def __init__(self, answers: dict[str, list[Answer] | Answer]) -> None:
        self.answers = {k: v if isinstance(v, list) else [v] for k, v in answers.items()}
        self.seen: list[Seen] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        path = request.url.path
        self.seen.append(Seen(request.method, path, dict(request.headers), body))
        queue = self.answers.get(path)
        if not queue:
            return httpx.Response(404, json={"detail": "Not Found"})
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        headers = {"content-type": answer.content_type, **answer.headers}
        return httpx.Response(answer.status, content=answer.body, headers=headers)

    def bodies(self, path: str) -> list[Any]:
        return [s.body for s in self.seen if s.path == path]


def recorded_engine(
    answers: dict[str, list[Answer] | Answer],
    *,
    model: str | None = None,
    base_url: str = "http://gpu-box:8000/v1",
    **kwargs: Any,
) -> tuple[RemoteEngine, Recorded]:
    recorded = Recorded(answers)
    kwargs.setdefault("fetch_tokenizer", False)
    kwargs.setdefault("retry", FAST_RETRY)
    engine = connect_remote(
        base_url, model=model, transport=httpx.MockTransport(recorded), **kwargs
    )
    return engine, recorded


# -- a real HTTP server ------------------------------------------------------------------------

Action = Callable[["ScriptedHandler"], None]


class ScriptedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- quiet tests
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        script = self.server.script
        script.seen.append(Seen(self.command, self.path, dict(self.headers), body))
        actions = script.actions.get(self.path.split("?")[0])
        if not actions:
            send_json(self, 404, {"detail": "Not Found"})
            return
        action = actions.pop(0) if len(actions) > 1 else actions[0]
        action(self)

    do_GET = _serve
    do_POST = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    script: ScriptedServer


def send_json(handler: ScriptedHandler, status: int, obj: Any, **headers: str) -> None:
    data = json.dumps(obj).encode()
    handler.send_response(status)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(data)))
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


def start_chunked(handler: ScriptedHandler) -> None:
    handler.send_response(200)
    handler.send_header("content-type", "text/event-stream")
    handler.send_header("transfer-encoding", "chunked")
    handler.end_headers()


def write_chunk(handler: ScriptedHandler, data: bytes) -> None:
    handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    handler.wfile.flush()


def end_chunked(handler: ScriptedHandler) -> None:
    handler.wfile.write(b"0\r\n\r\n")
    handler.wfile.flush()


def json_action(status: int, obj: Any, **headers: str) -> Action:
    return lambda h: send_json(h, status, obj, **headers)


def stream_action(body: bytes) -> Action:
    def act(h: ScriptedHandler) -> None:
        start_chunked(h)
        write_chunk(h, body)
        end_chunked(h)

    return act


def dies_after(body: bytes) -> Action:
    """Streams `body`, then the connection drops without the end of the chunked body, as when
    the server process is killed."""

    def act(h: ScriptedHandler) -> None:
        start_chunked(h)
        write_chunk(h, body)
        h.connection.shutdown(socket.SHUT_RDWR)
        h.close_connection = True

    return act


class ScriptedServer:
    """A real HTTP server on 127.0.0.1 and a free port, answering from `actions` per path."""

    def __init__(self, actions: dict[str, list[Action] | Action] | None = None) -> None:
        self.actions: dict[str, list[Action]] = {}
        for path, action in (actions or {}).items():
            self.on(path, action)
        self.seen: list[Seen] = []
        self.release = threading.Event()  # lets actions that wait return at teardown
        self.client_gone = threading.Event()  # set by `hangs_after` when the client closed
        self._server = _Server(("127.0.0.1", 0), ScriptedHandler)
        self._server.script = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def on(self, path: str, action: list[Action] | Action) -> None:
        self.actions[path] = list(action) if isinstance(action, list) else [action]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def never_answers(self) -> Action:
        """Reads the request and sends nothing until the test ends."""
        return lambda h: self.release.wait(30)

    def stalls_after(self, body: bytes) -> Action:
        """Streams `body`, then sends nothing more until the test ends."""

        def act(h: ScriptedHandler) -> None:
            start_chunked(h)
            write_chunk(h, body)
            self.release.wait(30)

        return act

    def hangs_after(self, body: bytes) -> Action:
        """Streams `body`, then keeps the stream open with SSE comments until the client goes
        away (recorded in `client_gone`) or the test ends."""

        def act(h: ScriptedHandler) -> None:
            start_chunked(h)
            write_chunk(h, body)
            while not self.release.wait(0.02):
                try:
                    write_chunk(h, b": keep-alive\n\n")
                except OSError:
                    self.client_gone.set()
                    return

        return act

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
