"""Command line: `qwen3tui` opens the chat; `ask`, `sessions` and `models` are for scripts.

Every failure a user can cause ends as one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from qwen3tui import __version__
from qwen3tui.cli_options import (
    EXIT_CANCELLED,
    EXIT_USAGE,
    OneLineParser,
    UserError,
    add_model_arguments,
)
from qwen3tui.engine.errors import EngineError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="qwen3tui", description="Chat with Qwen3 models in your terminal.")
    parser.add_argument("--version", action="version", version=f"qwen3tui {__version__}")
    add_model_arguments(parser)
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument(
        "--resume",
        nargs="?",
        const="",
        default=None,
        metavar="ID",
        help="open a saved session (no ID: choose from the list)",
    )
    resume.add_argument(
        "--continue", dest="continue_last", action="store_true", help="open the most recent session"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    from qwen3tui import ask

    ask.add_parser(sub)
    from qwen3tui import sessions_cli

    sessions_cli.add_parser(sub)
    from qwen3tui import models_cli

    models_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "ask":
            from qwen3tui import ask

            return ask.run(args)
        if args.command == "sessions":
            from qwen3tui import sessions_cli

            return sessions_cli.run(args)
        if args.command == "models":
            from qwen3tui import models_cli

            return models_cli.run(args)
        from qwen3tui.tui import run_app

        return run_app(args)
    except KeyboardInterrupt:
        print("qwen3tui: interrupted", file=sys.stderr)
        return EXIT_CANCELLED
    except (UserError, EngineError) as err:
        print(f"qwen3tui: {err}", file=sys.stderr)
        return EXIT_USAGE
