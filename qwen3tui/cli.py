"""Command line: `qwen3tui` opens the chat; `ask` and `sessions` are for scripts.

Every failure a user can cause ends as one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from qwen3tui import __version__
from qwen3tui.engine.errors import EngineError
from qwen3tui.engine.info import DEFAULT_MODEL

EXIT_USAGE = 2


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""


def add_model_arguments(p: argparse.ArgumentParser, *, subcommand: bool = False) -> None:
    """The model options, on the main parser and again on `ask`.

    On a subcommand their defaults are SUPPRESS, so `qwen3tui --model X ask` keeps X instead
    of the subparser writing its own default over it.
    """

    def default(value):
        return argparse.SUPPRESS if subcommand else value

    p.add_argument(
        "--model",
        "-m",
        default=default(None),
        help="Hugging Face model id or local directory (default: `model` in settings.toml,"
        f" else {DEFAULT_MODEL})",
    )
    p.add_argument(
        "--device", default=default("auto"), help="auto, cpu, cuda, cuda:N or mps (default: auto)"
    )
    p.add_argument(
        "--dtype",
        default=default("auto"),
        help="auto, bfloat16, float16 or float32 (default: auto)",
    )
    p.add_argument(
        "--context",
        type=int,
        default=default(None),
        metavar="N",
        help="context window in tokens (KV cache size; default: 32768 on CUDA, 16384 on MPS,"
        " 8192 on CPU, at most the model's limit)",
    )
    p.add_argument(
        "--quantize",
        choices=["int8"],
        default=default(None),
        help="weight-only quantization at load time",
    )


def chosen_model(args: argparse.Namespace) -> str:
    """--model, else the model in the user's settings, else the default."""
    if args.model:
        return args.model
    from qwen3tui.settings import UserSettings

    return UserSettings.load().model or DEFAULT_MODEL


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qwen3tui", description="Chat with Qwen3 models in your terminal."
    )
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command != "sessions":
            args.model = chosen_model(args)
        if args.command == "ask":
            from qwen3tui import ask

            return ask.run(args)
        if args.command == "sessions":
            from qwen3tui import sessions_cli

            return sessions_cli.run(args)
        from qwen3tui.tui import run_app

        return run_app(args)
    except KeyboardInterrupt:
        print("qwen3tui: interrupted", file=sys.stderr)
        return 130
    except (UserError, EngineError) as err:
        print(f"qwen3tui: {err}", file=sys.stderr)
        return EXIT_USAGE
