"""HTTP to a model server: timeouts, retries with back-off, one-line errors, an API key that no
message shows, and streams that a cancel event closes at once."""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

try:
    import httpx2 as httpx  # the maintained continuation of httpx; huggingface_hub pulls it in
except ImportError:  # Python 3.10, where httpx2 does not install: same API
    import httpx  # type: ignore[no-redef]

from .errors import (
    AuthError,
    RemoteError,
    RequestCancelledError,
    RequestRejectedError,
    ServerBusyError,
    ServerTimeoutError,
    ServerUnreachableError,
    StreamInterruptedError,
)

DEFAULT_KEY_VARS = ("QWEN3TUI_API_KEY", "OPENAI_API_KEY")
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_CANCEL_POLL_S = 0.05  # how often a waiting stream looks at the cancel event
_END = object()  # the reader thread's end-of-stream marker


@dataclass(frozen=True)
class Timeouts:
    connect_s: float = 10.0
    # Between two bytes of a reply: a long prompt's prefill on a busy server can take minutes.
    read_s: float = 300.0
    # Listing models and the like: no prefill to wait for, so a silent server is found sooner.
    metadata_read_s: float = 30.0


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # tries in all for 429/5xx answered before any reply text
    backoff_s: float = 0.5  # doubled each retry; a Retry-After header wins, up to the cap
    max_backoff_s: float = 8.0


DEFAULT_TIMEOUTS = Timeouts()
DEFAULT_RETRY = RetryPolicy()


class ApiKey:
    """The key and the variable it came from. No repr, str or message shows the key itself."""

    __slots__ = ("_value", "variable")

    def __init__(self, value: str | None, variable: str) -> None:
        self._value = value or None
        self.variable = variable  # named in messages: where the user should put the key

    @classmethod
    def from_env(cls, variable: str | None = None) -> ApiKey:
        """The key from `variable`, or else QWEN3TUI_API_KEY, then OPENAI_API_KEY."""
        if variable:
            return cls(os.environ.get(variable), variable)
        for name in DEFAULT_KEY_VARS:
            if os.environ.get(name):
                return cls(os.environ[name], name)
        return cls(None, DEFAULT_KEY_VARS[0])

    @property
    def present(self) -> bool:
        return self._value is not None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._value}"} if self._value else {}

    def __repr__(self) -> str:
        return f"ApiKey(${self.variable}, {'set' if self._value else 'unset'})"

    __str__ = __repr__


def normalize_base_url(url: str) -> str:
    """`gpu-box:8000` -> `http://gpu-box:8000/v1`; a URL with a path is kept as given."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    path = parts.path.rstrip("/") or "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def display_url(url: str) -> str:
    """The URL without any user:password part, for messages and saved sessions."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def host_of(url: str) -> str:
    return urlsplit(url).hostname or url


def server_message(response: httpx.Response) -> str:
    """The error text a server put in its body (OpenAI, vLLM, Ollama, FastAPI shapes)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    text: Any = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            text = error.get("message")
        elif isinstance(error, str):
            text = error
        text = text or body.get("message") or body.get("detail")
    if not isinstance(text, str):
        text = response.text if text is None else json.dumps(text)
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return first if len(first) <= 200 else first[:199] + "…"


class OpenStream:
    """A streaming response: its lines, read by a helper thread so a cancel ends it at once."""

    def __init__(self, response: httpx.Response, server: str, read_timeout_s: float) -> None:
        self.response = response
        self.content_type = response.headers.get("content-type", "").split(";")[0].strip()
        self._server = server
        self._read_timeout_s = read_timeout_s
        self._closed = False

    def lines(self, cancel: threading.Event | None = None) -> Iterator[str]:
        """Each line of the body, without its end. Returns quietly when `cancel` is set;
        raises StreamInterruptedError or ServerTimeoutError when the connection fails."""
        items: queue.Queue[object] = queue.Queue()
        reader = threading.Thread(target=self._read, args=(items,), daemon=True)
        reader.start()
        try:
            while True:
                try:
                    item = items.get(timeout=_CANCEL_POLL_S)
                except queue.Empty:
                    if cancel is not None and cancel.is_set():
                        return
                    continue
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise self._describe(item)
                yield item  # type: ignore[misc]
                if cancel is not None and cancel.is_set():
                    return
        finally:
            self.close()  # a cancel or an abandoned reader: the server sees the client go

    def _read(self, items: queue.Queue[object]) -> None:
        try:
            for line in self.response.iter_lines():
                items.put(line)
            items.put(_END)
        except BaseException as err:  # noqa: BLE001 -- handed to the consuming thread
            items.put(_END if self._closed else err)

    def _describe(self, err: BaseException) -> RemoteError:
        if isinstance(err, httpx.TimeoutException):
            return ServerTimeoutError(
                f"the server at {self._server} sent nothing for {self._read_timeout_s:g} s"
                " mid-reply.",
                "The partial reply was kept; check the server, then retry.",
            )
        return StreamInterruptedError(
            f"the connection to {self._server} broke mid-reply ({_first_line(err)}).",
            "The partial reply was kept; check the server, then retry.",
        )

    def read_all(self) -> str:
        return self.response.read().decode("utf-8", errors="replace")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.response.close()


class ServerClient:
    """One server's HTTP client. `base_url` is the OpenAI-compatible base (ending in /v1)."""

    def __init__(
        self,
        base_url: str,
        key: ApiKey,
        *,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        retry: RetryPolicy = DEFAULT_RETRY,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self.display = display_url(self.base_url)
        self.key = key
        self.timeouts = timeouts
        self.retry = retry
        timeout = httpx.Timeout(
            timeouts.read_s,
            connect=timeouts.connect_s,
            read=timeouts.read_s,
            pool=timeouts.connect_s,
        )
        self._http = httpx.Client(
            timeout=timeout, headers=key.headers(), follow_redirects=True, transport=transport
        )

    def __repr__(self) -> str:
        return f"ServerClient({self.display!r}, {self.key!r})"

    def api_url(self, path: str) -> str:
        """A path under the OpenAI-compatible base, e.g. "/models"."""
        return self.base_url + path

    def root_url(self, path: str) -> str:
        """A path at the server's root, e.g. Ollama's "/api/chat" beside its "/v1"."""
        base = self.base_url
        if base.endswith("/v1"):
            base = base[: -len("/v1")]
        return base + path

    def close(self) -> None:
        self._http.close()

    # -- requests ----------------------------------------------------------------------------

    def get_json(self, url: str, cancel: threading.Event | None = None) -> Any:
        read_s = min(self.timeouts.read_s, self.timeouts.metadata_read_s)
        stream = self.open("GET", url, None, cancel, read_s=read_s)
        try:
            text = stream.read_all()
        except httpx.HTTPError as err:
            raise self._transport_error(err, read_s) from None
        finally:
            stream.close()
        try:
            return json.loads(text)
        except ValueError:
            raise RequestRejectedError(
                f"{display_url(url)} did not answer with JSON.",
                "Check that --server points at an OpenAI-compatible API (it usually ends in /v1).",
            ) from None

    def open(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None,
        cancel: threading.Event | None = None,
        *,
        read_s: float | None = None,
    ) -> OpenStream:
        """Send a request and return its open response once the status is 2xx.

        429 and 5xx are retried with back-off; any other failure raises a one-line
        RemoteError (an HTTPStatusError-like `status` attribute says which status it was).
        With `cancel`, the wait for the answer's headers (a long prefill, a stuck server) is
        given up at once when it is set: RequestCancelledError, and the answer, should it come,
        is closed unread.
        """
        read_s = self.timeouts.read_s if read_s is None else read_s
        if cancel is None:
            return self._open_now(method, url, body, None, read_s)
        outcome: list[object] = []
        arrived = threading.Event()
        lock = threading.Lock()

        def send() -> None:
            try:
                result: object = self._open_now(method, url, body, cancel, read_s)
            except BaseException as err:  # noqa: BLE001 -- handed to the waiting thread
                result = err
            with lock:
                abandoned = bool(outcome)  # the waiter left a None: nobody takes the answer
                if not abandoned:
                    outcome.append(result)
            if abandoned and isinstance(result, OpenStream):
                result.close()  # the caller gave up: the server sees the client go
            arrived.set()

        threading.Thread(target=send, daemon=True).start()
        while not arrived.wait(_CANCEL_POLL_S):
            with lock:
                if cancel.is_set() and not outcome:
                    outcome.append(None)
                    raise RequestCancelledError("the request was cancelled before it started.")
        result = outcome[0]
        if isinstance(result, BaseException):
            raise result
        return result  # type: ignore[return-value]

    def _open_now(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None,
        cancel: threading.Event | None,
        read_s: float,
    ) -> OpenStream:
        timeout = httpx.Timeout(
            read_s, connect=self.timeouts.connect_s, read=read_s, pool=self.timeouts.connect_s
        )
        attempt = 0
        while True:
            attempt += 1
            request = self._http.build_request(method, url, json=body, timeout=timeout)
            try:
                response = self._http.send(request, stream=True)
            except httpx.HTTPError as err:
                raise self._transport_error(err, read_s) from None
            if response.is_success:
                return OpenStream(response, self.display, read_s)
            try:
                response.read()
            except httpx.HTTPError:
                pass  # the status says enough
            finally:
                response.close()
            if response.status_code in RETRY_STATUSES and attempt < self.retry.attempts:
                delay = self._retry_delay(response, attempt)
                if (cancel or threading.Event()).wait(delay):
                    raise RequestCancelledError("the request was cancelled before it started.")
                continue
            raise self._status_error(response, url, attempt)

    def _retry_delay(self, response: httpx.Response, attempt: int) -> float:
        delay = self.retry.backoff_s * 2 ** (attempt - 1)
        after = response.headers.get("retry-after", "")
        if after.strip().isdigit():
            delay = float(after)
        return min(delay, self.retry.max_backoff_s)

    def _status_error(self, response: httpx.Response, url: str, attempts: int) -> RemoteError:
        status = response.status_code
        said = server_message(response)
        detail = f"{status}: {said}" if said else str(status)
        if status in (401, 403):
            var = self.key.variable
            if not self.key.present:
                err: RemoteError = AuthError(
                    f"the server at {self.display} needs an API key ({detail}).",
                    f"Put it in ${var}, or name another variable with --api-key-env.",
                )
            else:
                err = AuthError(
                    f"the server at {self.display} refused the API key in ${var} ({detail}).",
                    f"Check the key in ${var}.",
                )
        elif status in RETRY_STATUSES:
            tries = f" after {attempts} tries" if attempts > 1 else ""
            err = ServerBusyError(
                f"the server at {self.display} answered {detail}{tries}.",
                "It is overloaded or failing: try again later, or check its log.",
            )
        else:
            err = RequestRejectedError(
                f"the server at {self.display} refused the request to"
                f" {urlsplit(url).path} ({detail}).",
                "Check --server and --model.",
            )
        err.status = status  # type: ignore[attr-defined]
        err.server_said = said  # type: ignore[attr-defined]
        return err

    def _transport_error(self, err: httpx.HTTPError, read_s: float) -> RemoteError:
        host = host_of(self.base_url)
        text = _error_chain_text(err)
        lowered = text.lower()
        if isinstance(err, httpx.ConnectTimeout):
            return ServerUnreachableError(
                f"could not connect to {self.display} within {self.timeouts.connect_s:g} s.",
                "Check the address and that the server is running and reachable.",
            )
        if isinstance(err, httpx.TimeoutException):
            return ServerTimeoutError(
                f"the server at {self.display} sent nothing for {read_s:g} s.",
                "It may be overloaded or stuck: check it, then retry.",
            )
        if any(s in lowered for s in _DNS_FAILURES):
            return ServerUnreachableError(
                f"cannot resolve the host name {host!r}.", "Check the spelling in --server."
            )
        if any(s in lowered for s in ("ssl", "tls", "certificate")):
            return ServerUnreachableError(
                f"the TLS handshake with {self.display} failed ({_first_line(err)}).",
                "Check the server's certificate, or use http:// if it does not speak TLS.",
            )
        if "refused" in lowered or "errno 111" in lowered or "errno 61" in lowered:
            return ServerUnreachableError(
                f"nothing is listening at {self.display} (connection refused).",
                "Start the server, or check the host and port in --server.",
            )
        if isinstance(err, httpx.UnsupportedProtocol):
            return ServerUnreachableError(
                f"{self.display} is not an http:// or https:// URL.", "Fix --server."
            )
        if isinstance(err, (httpx.RemoteProtocolError, httpx.ReadError)):
            return StreamInterruptedError(
                f"the connection to {self.display} broke ({_first_line(err)}).",
                "Check the server, then retry.",
            )
        return ServerUnreachableError(
            f"cannot reach {self.display} ({_first_line(err)}).", "Check --server and the network."
        )


_DNS_FAILURES = (
    "name or service not known",
    "nodename nor servname",
    "temporary failure in name resolution",
    "no address associated",
    "getaddrinfo failed",
    "name resolution",
)


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[0].strip() if lines else type(err).__name__


def _error_chain_text(err: BaseException) -> str:
    """The messages of an error and its causes: httpx wraps socket and ssl errors."""
    parts, seen = [], set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return " | ".join(parts)
