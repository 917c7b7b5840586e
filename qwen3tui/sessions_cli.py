"""`qwen3tui sessions ...`: list, show, search, export, import, rename and delete sessions.

Errors are one line on stderr ("qwen3tui: ...") with exit code 2; `--json` forms are for scripts.
Stored text is printed with its control characters neutralized (a saved prompt cannot retitle or
clear the terminal), except in an export to a file or a pipe, which is exact. A closed pipe
(`... | head -1`) ends the command quietly with status 141, like other Unix tools. Commands that
only read never create, migrate or set aside the session file.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from qwen3tui.atomic_file import TargetExistsError, write_atomically
from qwen3tui.closed_pipe import exit_code_for_closed_pipe
from qwen3tui.engine.options import check_value
from qwen3tui.store import SessionStore, StoreError
from qwen3tui.store.errors import StoreUnavailable
from qwen3tui.store.export import export_markdown, load_export, session_to_dict, validate_export
from qwen3tui.terminal_text import json_for_terminal, neutralize

EXIT_OK, EXIT_USAGE = 0, 2


class _CommandError(Exception):
    """A user-caused failure: printed as one line, exit code 2."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sessions",
        help="list, search, export and manage saved sessions",
        description="Manage saved chat sessions. IDs may be given by a unique"
        " prefix. Without a subcommand: list.",
    )
    cmds = p.add_subparsers(dest="sessions_command", metavar="SUBCOMMAND")

    c = cmds.add_parser("list", help="saved sessions, most recent first")
    c.add_argument("--json", action="store_true", help="print a JSON array")
    c.add_argument("--limit", type=int, default=None, metavar="N", help="show at most N")

    c = cmds.add_parser("show", help="print one session")
    c.add_argument("id", metavar="ID")
    c.add_argument("--json", action="store_true", help="print the session as a JSON object")
    c.add_argument(
        "--message",
        type=int,
        metavar="MID",
        help="show the version of the conversation that holds message MID (a search hit's"
        " message_id) instead of the one last shown",
    )

    c = cmds.add_parser("search", help="full-text search of titles, messages and answers")
    c.add_argument("query", nargs="+", metavar="QUERY")
    c.add_argument("--thinking", action="store_true", help="also search the reasoning")
    c.add_argument("--json", action="store_true", help="print a JSON array")

    c = cmds.add_parser("export", help="write a session as Markdown or JSON")
    c.add_argument("id", metavar="ID")
    c.add_argument("--format", choices=["md", "json"], default="md", help="default: md")
    c.add_argument("-o", "--output", default=None, metavar="FILE", help="default: stdout")
    c.add_argument(
        "--force",
        action="store_true",
        help="replace FILE if it exists (a symbolic link is replaced, never followed)",
    )

    c = cmds.add_parser("import", help="add a session from a JSON export (prints the new id)")
    c.add_argument("file", metavar="FILE", help="the export file, or - for stdin")

    c = cmds.add_parser("rename", help="give a session a new title")
    c.add_argument("id", metavar="ID")
    c.add_argument("title", nargs="+", metavar="TITLE")

    c = cmds.add_parser("delete", help="delete a session")
    c.add_argument("id", metavar="ID")
    c.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")


def run(args: argparse.Namespace) -> int:
    command = getattr(args, "sessions_command", None) or "list"
    try:
        store = _open_store(for_reading=command not in _CHANGES)
    except StoreError as err:
        return _fail(str(err))
    try:
        for warning in store.warnings:
            _warn(warning)
        try:
            code = _COMMANDS[command](store, args)
        except StoreUnavailable as err:
            raise _CommandError(f"{_NOT_SAVED[command]}: {err.reason}") from None
        if command in _CHANGES and not store.persistent:
            raise _CommandError(f"{_NOT_SAVED[command]}: {store.path} cannot be written")
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        return code
    except BrokenPipeError:
        return exit_code_for_closed_pipe()
    except (StoreError, _CommandError) as err:
        return _fail(str(err))
    finally:
        store.close()


def _open_store(*, for_reading: bool) -> SessionStore:
    """The store; for a command that only reads, opened so that the file is never changed."""
    return SessionStore.open(for_reading=for_reading)


def _fail(message: str) -> int:
    _warn(message, prefix="qwen3tui: ")
    return EXIT_USAGE


def _warn(message: str, prefix: str = "qwen3tui: warning: ") -> None:
    # Messages can quote stored text (a title in "ambiguous id"), so they are neutralized too.
    try:
        print(prefix + neutralize(" ".join(message.split())), file=sys.stderr)
    except BrokenPipeError:
        pass  # stderr is gone as well: nothing left to tell


def _print(text: str = "") -> None:
    """One line for a person, with stored text made harmless for the terminal."""
    print(neutralize(text))


def _print_json(value: Any) -> None:
    print(json_for_terminal(value))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _local_time(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


def _list(store: SessionStore, args: argparse.Namespace) -> int:
    sessions = store.list_sessions(getattr(args, "limit", None))
    if getattr(args, "json", False):
        _print_json(
            [
                {
                    "id": s.id,
                    "title": s.title,
                    "created": s.created,
                    "updated": s.updated,
                    "model": s.model,
                    "message_count": s.message_count,
                }
                for s in sessions
            ]
        )
        return EXIT_OK
    if not sessions:
        _print("No saved sessions.")
        return EXIT_OK
    _print(f"{'ID':<8}  {'UPDATED':<16}  {'MSGS':>4}  TITLE")
    for s in sessions:
        _print(
            f"{s.id[:8]}  {_local_time(s.updated):<16}  {s.message_count:>4}"
            f"  {_one_line(s.title) or '(untitled)'}"
        )
    return EXIT_OK


def _show(store: SessionStore, args: argparse.Namespace) -> int:
    session = store.get_session(store.resolve_id(args.id), through=args.message)
    if args.json:
        _print_json(session_to_dict(session))
    else:
        sys.stdout.write(neutralize(export_markdown(session)))
    return EXIT_OK


def _search(store: SessionStore, args: argparse.Namespace) -> int:
    hits = store.search(" ".join(args.query), include_thinking=args.thinking)
    if args.json:
        _print_json(
            [
                {
                    "id": h.session_id,
                    "title": h.title,
                    "snippet": h.snippet,
                    "matched": h.kind,
                    "message_order": h.message_order,
                    "message_id": h.message_id,
                    "updated": h.updated,
                }
                for h in hits
            ]
        )
        return EXIT_OK
    if not hits:
        _print("No matches.")
    for h in hits:
        _print(f"{h.session_id[:8]}  {_one_line(h.title) or '(untitled)'}")
        _print(f"          {h.kind}: {_one_line(h.snippet)}")
    return EXIT_OK


def _export(store: SessionStore, args: argparse.Namespace) -> int:
    session_id = store.resolve_id(args.id)
    if args.format == "json":
        text = json.dumps(store.export_json(session_id), ensure_ascii=False, indent=2) + "\n"
    else:
        text = store.export_markdown(session_id)
    if args.output is None:
        # Exact bytes for a file or a pipe; a terminal gets the text made harmless.
        sys.stdout.write(neutralize(text) if sys.stdout.isatty() else text)
        return EXIT_OK
    try:
        write_atomically(args.output, text, overwrite=args.force)
    except TargetExistsError as err:
        raise _CommandError(f"{err.strerror}; pass --force to replace it") from None
    except OSError as err:
        raise _CommandError(f"{err.strerror or err}") from None
    print(f"exported {session_id[:8]} to {neutralize(args.output)}", file=sys.stderr)
    return EXIT_OK


def _import(store: SessionStore, args: argparse.Namespace) -> int:
    name = "stdin" if args.file == "-" else args.file
    try:
        raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
        text = raw.decode("utf-8-sig")
    except OSError as err:
        raise _CommandError(f"cannot read {name}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise _CommandError(f"cannot read {name}: it is not UTF-8 text") from None
    data = load_export(text, name)
    # The whole file, before anything is written; generation values within the engine's ranges.
    validate_export(data, check_value=check_value)
    new_id = store.import_json(data)
    if not store.persistent:
        raise _CommandError(f"{_NOT_SAVED['import']}: {store.path} cannot be written")
    print(new_id)
    return EXIT_OK


def _rename(store: SessionStore, args: argparse.Namespace) -> int:
    session_id = store.resolve_id(args.id)
    store.rename_session(session_id, " ".join(args.title))
    return EXIT_OK


def _delete(store: SessionStore, args: argparse.Namespace) -> int:
    session_id = store.resolve_id(args.id)
    if not args.yes:
        title = neutralize(_one_line(store.get_session(session_id).title)) or "(untitled)"
        if not sys.stdin.isatty():
            raise _CommandError(
                f"not deleting {session_id[:8]} ({title}) without confirmation; pass --yes"
            )
        try:
            answer = input(f"Delete session {session_id[:8]} ({title})? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("Not deleted.", file=sys.stderr)
            return EXIT_OK
    store.delete_session(session_id)
    print(f"deleted {session_id[:8]}", file=sys.stderr)
    return EXIT_OK


_CHANGES = ("import", "rename", "delete")
_NOT_SAVED = {
    "import": "nothing was imported",
    "rename": "the session was not renamed",
    "delete": "nothing was deleted",
}
_COMMANDS = {
    "list": _list,
    "show": _show,
    "search": _search,
    "export": _export,
    "import": _import,
    "rename": _rename,
    "delete": _delete,
}
