"""What can go wrong talking to a model server, each as one line: the problem, then the fix.

All are EngineErrors, so the UI and `ask` show them as they show the local engine's errors.
Errors raised after some deltas were yielded (a stream that stopped, a malformed event) leave
the caller holding the partial reply, which it keeps and marks.
"""

from __future__ import annotations

from qwen3tui.engine.errors import EngineError


class RemoteError(EngineError):
    """Any failure of a remote engine."""


class ServerUnreachableError(RemoteError):
    """Connection refused, unknown host, TLS failure, connect timeout."""


class AuthError(RemoteError):
    """401/403: no API key, or a key the server refuses."""


class RemoteModelNotFoundError(RemoteError):
    """The server does not serve the requested model; the message lists what it serves."""


class ServerBusyError(RemoteError):
    """429 or 5xx that retries with back-off did not get past."""


class RequestRejectedError(RemoteError):
    """Another 4xx: the server refused the request (e.g. the prompt is too long)."""


class ServerTimeoutError(RemoteError):
    """The server sent nothing for longer than the read timeout."""


class StreamInterruptedError(RemoteError):
    """The stream stopped mid-reply (server killed, connection dropped): no summary was faked."""


class MalformedStreamError(RemoteError):
    """The server sent something that is not the streaming format it announced."""


class ServerStreamError(RemoteError):
    """The server reported an error inside the stream."""


class RequestCancelledError(RemoteError):
    """The cancel event was set while a request waited to be retried (not shown to users)."""
