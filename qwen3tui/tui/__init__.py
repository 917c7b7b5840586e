"""The Textual chat UI. Never imports torch: the engine is loaded inside a worker thread."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from qwen3tui.cli_options import EXIT_NOT_SAVED


def engine_factory_for(args: argparse.Namespace) -> Callable[[Callable[..., None]], Any]:
    """A function that loads the engine the command line asked for (called in a worker)."""

    def load(progress: Callable[..., None]) -> Any:
        from qwen3tui.engine import load_engine

        return load_engine(
            args.model,
            device=args.device,
            dtype=args.dtype,
            context_length=args.context,
            quantize=args.quantize,
            progress=progress,
        )

    return load


def run_app(args: argparse.Namespace) -> int:
    """Open the chat window for the parsed `qwen3tui` command line; returns the exit code."""
    from qwen3tui.store import SessionStore

    from .app import Qwen3App

    try:
        store = SessionStore.open()
    except Exception as err:  # noqa: BLE001 -- one line for the user, never a traceback
        print(f"qwen3tui: cannot open the session store: {err}", file=sys.stderr)
        return 2
    app = Qwen3App(
        engine_factory=engine_factory_for(args),
        model_name=args.model,
        store=store,
        resume=args.resume,
        continue_last=args.continue_last,
    )
    result = app.run()
    if app.unsaved:
        reason = app.saver.state.unavailable or "the session store could not be written"
        print(f"qwen3tui: not saved: {reason}; lost: {', '.join(app.unsaved)}", file=sys.stderr)
        return EXIT_NOT_SAVED
    return result if isinstance(result, int) else 0
