"""The Textual chat UI. Never imports torch: the engine is loaded inside a worker thread."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from qwen3tui.cli_options import EXIT_NOT_SAVED


def engine_factory_for(args: argparse.Namespace) -> Callable[[Callable[..., None]], Any]:
    """A function that opens the engine the command line asked for (called in a worker)."""
    from qwen3tui import engine_choice

    return lambda progress: engine_choice.open_engine(args, progress)


def model_factory_for(args: argparse.Namespace) -> Callable[[str, Callable[..., None]], Any]:
    """A function that opens another model like the first (for `/model NAME`)."""
    from qwen3tui import engine_choice

    return lambda model, progress: engine_choice.open_model(args, model, progress)


def run_app(args: argparse.Namespace) -> int:
    """Open the chat window for the parsed `qwen3tui` command line; returns the exit code."""
    from qwen3tui import engine_choice
    from qwen3tui.store import SessionStore

    from .app import Qwen3App
    from .exit_guard import ExitGuard

    try:
        store = SessionStore.open()
    except Exception as err:  # noqa: BLE001 -- one line for the user, never a traceback
        print(f"qwen3tui: cannot open the session store: {err}", file=sys.stderr)
        return 2
    engine_choice.choose(args, _continued_session_settings(args, store))
    app = Qwen3App(
        engine_factory=engine_factory_for(args),
        model_factory=model_factory_for(args),
        model_name=args.model or args.server,
        store=store,
        resume=args.resume,
        continue_last=args.continue_last,
    )

    def exit_code(result: object = None) -> int:
        """Says what was not saved (if anything) and gives the process's exit code."""
        if app.unsaved:
            reason = app.saver.state.unavailable or "the session store could not be written"
            try:
                print(
                    f"qwen3tui: not saved: {reason}; lost: {', '.join(app.unsaved)}",
                    file=sys.stderr,
                )
            except OSError:
                pass  # the terminal is gone
            return EXIT_NOT_SAVED
        return result if isinstance(result, int) else app.exit_code

    with ExitGuard(app.exit_requested, exit_code):
        result = app.run()
    return exit_code(result)


def _continued_session_settings(args: argparse.Namespace, store: Any) -> dict[str, Any]:
    """The saved settings of the session `--continue`/`--resume ID` opens (where it ran)."""
    from qwen3tui.store import StoreError

    try:
        if args.continue_last:
            session_id = store.most_recent_id()
        elif args.resume:
            session_id = store.resolve_id(args.resume)
        else:
            return {}
        return store.get_session(session_id).settings if session_id else {}
    except StoreError:
        return {}  # the app says what is wrong with the id when it opens it
