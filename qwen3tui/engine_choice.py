"""Which engine a command line asks for: our own on this machine, or a model server.

The one place both the TUI and `ask` get their engine from. The server comes from `--server`,
else `QWEN3TUI_SERVER`, else `server` in settings.toml, else (when continuing a session that
was started on a server) that session's server.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from qwen3tui.engine.chat_engine import ChatEngine
from qwen3tui.engine.info import DEFAULT_MODEL, LoadProgress

SERVER_VARIABLE = "QWEN3TUI_SERVER"


def choose(args: argparse.Namespace, session_settings: dict[str, Any] | None = None) -> None:
    """Settle `args.server` and `args.model` in place, from the flags, the environment, the
    user's settings and the session being continued, in that order."""
    from qwen3tui.settings import UserSettings

    saved = UserSettings.load()
    session = session_settings or {}
    server = getattr(args, "server", None) or os.environ.get(SERVER_VARIABLE) or saved.server
    if not server and not args.model and isinstance(session.get("server"), str):
        server = session["server"]  # a session started on a server continues there
        args.model = (
            session.get("server_model") if isinstance(session.get("server_model"), str) else None
        )
    args.server = server or None
    if args.server is None:
        args.model = args.model or saved.model or DEFAULT_MODEL


def open_engine(
    args: argparse.Namespace, progress: Callable[[LoadProgress], None] | None = None
) -> ChatEngine:
    """Load the local engine or connect to the server; EngineError (one line) when neither can."""
    if getattr(args, "server", None):
        from qwen3tui.remote import connect_remote

        return connect_remote(
            args.server,
            model=args.model,
            api_key_env=getattr(args, "api_key_env", None),
            tokenizer_dir=getattr(args, "tokenizer", None),
        )
    from qwen3tui.engine import load_engine

    return load_engine(
        args.model,
        device=args.device,
        dtype=args.dtype,
        context_length=args.context,
        quantize=args.quantize,
        progress=progress,
    )


def open_model(
    args: argparse.Namespace, model: str, progress: Callable[[LoadProgress], None] | None = None
) -> ChatEngine:
    """`open_engine` for another model with the same device, dtype, context and server: how
    `/model NAME` switches mid-conversation."""
    return open_engine(argparse.Namespace(**{**vars(args), "model": model}), progress)


def where(engine: ChatEngine) -> dict[str, str]:
    """What a session records about where it runs, so `--continue` can go back there."""
    info = engine.info
    if info.server:
        return {"server": info.server, "server_model": info.model}
    return {}


def reply_model(engine: ChatEngine) -> str:
    """How a saved reply names what wrote it: the model, and the server it ran on if any."""
    info = engine.info
    return f"{info.model} @ {info.device}" if info.server else info.model
