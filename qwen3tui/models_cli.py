"""`qwen3tui models ...`: list, add, pull and remove the Qwen3 models qwen3tui can open.

Errors are one line on stderr ("qwen3tui: ...") with exit code 2; `list --json` is for scripts.
Names come from the file system and the Hub, so they are printed with control characters
neutralized.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qwen3tui import model_catalog
from qwen3tui.closed_pipe import exit_code_for_closed_pipe
from qwen3tui.engine.config import Qwen3Config
from qwen3tui.engine.errors import EngineError
from qwen3tui.model_catalog import CatalogError, ModelEntry, format_size
from qwen3tui.terminal_text import json_for_terminal, neutralize

EXIT_OK, EXIT_USAGE = 0, 2


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list, download and remove Qwen3 models",
        description="The Qwen3 models in the Hugging Face cache and in folders you added."
        " Without a subcommand: list.",
    )
    cmds = p.add_subparsers(dest="models_command", metavar="SUBCOMMAND")
    c = cmds.add_parser(
        "list", help="name, size, dense/MoE, thinking mode and weights of each model"
    )
    c.add_argument("--json", action="store_true", help="print a JSON array")
    c = cmds.add_parser("add", help="list a local checkpoint folder too (remembered)")
    c.add_argument("dir", metavar="DIR")
    c = cmds.add_parser(
        "pull", help="download a model from the Hugging Face Hub (only the files qwen3tui reads)"
    )
    c.add_argument("id", metavar="ID", help="e.g. Qwen/Qwen3-4B-Instruct-2507")
    c = cmds.add_parser(
        "rm", help="delete a model from the Hugging Face cache, or forget an added folder"
    )
    c.add_argument("id", metavar="ID")
    c.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")


def run(args: argparse.Namespace) -> int:
    command = getattr(args, "models_command", None) or "list"
    try:
        code = _COMMANDS[command](args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        return code
    except BrokenPipeError:
        return exit_code_for_closed_pipe()
    except CatalogError as err:
        print(f"qwen3tui: {neutralize(str(err))}", file=sys.stderr)
        return EXIT_USAGE


def _settings():
    from qwen3tui.settings import UserSettings

    return UserSettings.load()


def _list(args: argparse.Namespace) -> int:
    entries = model_catalog.list_models(_settings().model_dirs)
    if getattr(args, "json", False):
        print(json_for_terminal([e.to_dict() for e in entries]))
        return EXIT_OK
    if not entries:
        print(
            "No Qwen3 models yet: `qwen3tui models pull Qwen/Qwen3-1.7B`, or"
            " `qwen3tui models add DIR`."
        )
        return EXIT_OK
    rows = [_row(e) for e in entries]
    widths = [max(len(r[i]) for r in [_HEADER, *rows]) for i in range(len(_HEADER) - 1)]
    for row in [_HEADER, *rows]:
        cells = [f"{cell:<{w}}" for cell, w in zip(row[:-1], widths, strict=True)] + [row[-1]]
        print(neutralize("  ".join(cells).rstrip()))
    return EXIT_OK


_HEADER = ("NAME", "SIZE", "KIND", "THINKING", "WEIGHTS", "NOTE")


def _row(e: ModelEntry) -> tuple[str, ...]:
    kind = {"dense": "dense", "moe": "MoE"}.get(e.kind or "", "?")
    return (
        e.name,
        format_size(e.size_bytes),
        kind,
        e.mode_label,
        e.dtype or "?",
        e.problem or "",
    )


def _add(args: argparse.Namespace) -> int:
    path = Path(args.dir).expanduser()
    if not path.is_dir():
        raise CatalogError(f"{args.dir} is not a folder")
    try:
        Qwen3Config.from_dir(path)  # only Qwen3 checkpoints are listed
    except EngineError as err:
        raise CatalogError(err.problem) from None
    settings = _settings()
    if settings.warnings:  # saving now would replace what could not be read with defaults
        raise CatalogError(f"not added: {settings.warnings[0]}")
    folder = str(path.resolve())
    if folder in settings.model_dirs:
        print(f"{neutralize(folder)} is already listed.", file=sys.stderr)
        return EXIT_OK
    settings.model_dirs = (*settings.model_dirs, folder)
    _save(settings, "not added")
    print(f"added {neutralize(folder)}", file=sys.stderr)
    return EXIT_OK


def _pull(args: argparse.Namespace) -> int:
    path = model_catalog.pull(args.id)
    print(neutralize(str(path)))  # the snapshot folder, for scripts
    print(f"pulled {neutralize(args.id)}: `qwen3tui --model {args.id}`", file=sys.stderr)
    return EXIT_OK


def _rm(args: argparse.Namespace) -> int:
    settings = _settings()
    folder = _added_folder(args.id, settings.model_dirs)
    if folder is not None:
        if settings.warnings:
            raise CatalogError(f"not removed: {settings.warnings[0]}")
        settings.model_dirs = tuple(d for d in settings.model_dirs if d != folder)
        _save(settings, "not removed")
        print(f"forgot {neutralize(folder)} (its files are kept)", file=sys.stderr)
        return EXIT_OK
    size = model_catalog.cached_repo_size(args.id)
    if size is None:
        raise CatalogError(
            f"{args.id} is neither in the Hugging Face cache ({model_catalog.hub_cache_dir()})"
            " nor an added folder; `qwen3tui models list` shows them"
        )
    if not args.yes and not _confirm(
        f"Delete {args.id} ({format_size(size)}) from the Hugging Face cache?"
    ):
        print("Not deleted.", file=sys.stderr)
        return EXIT_OK
    freed = model_catalog.remove(args.id)
    print(f"deleted {neutralize(args.id)} ({format_size(freed)} freed)", file=sys.stderr)
    return EXIT_OK


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        raise CatalogError(f"{question.rstrip('?')}: not without confirmation; pass --yes")
    try:
        answer = input(f"{neutralize(question)} [y/N] ")
    except EOFError:
        answer = ""
    return answer.strip().lower() in ("y", "yes")


def _added_folder(name: str, model_dirs: tuple[str, ...]) -> str | None:
    candidates = {name, str(Path(name).expanduser().resolve())}
    return next((d for d in model_dirs if d in candidates), None)


def _save(settings, what: str) -> None:
    try:
        settings.save()
    except OSError as err:
        raise CatalogError(f"{what}: {err}") from None


_COMMANDS = {"list": _list, "add": _add, "pull": _pull, "rm": _rm}
