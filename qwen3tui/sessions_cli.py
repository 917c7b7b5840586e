"""`qwen3tui sessions ...`: list, show, search, export, import, rename and delete sessions.

Errors are one line on stderr ("qwen3tui: ...") with exit code 2; `--json` forms are for scripts.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from qwen3tui.store import SessionStore, StoreError
from qwen3tui.store.export import session_to_dict

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

    c = cmds.add_parser("search", help="full-text search of titles, messages and answers")
    c.add_argument("query", nargs="+", metavar="QUERY")
    c.add_argument("--thinking", action="store_true", help="also search the reasoning")
    c.add_argument("--json", action="store_true", help="print a JSON array")

    c = cmds.add_parser("export", help="write a session as Markdown or JSON")
    c.add_argument("id", metavar="ID")
    c.add_argument("--format", choices=["md", "json"], default="md", help="default: md")
    c.add_argument("-o", "--output", default=None, metavar="FILE", help="default: stdout")

    c = cmds.add_parser("import", help="add a session from a JSON export (prints the new id)")
    c.add_argument("file", metavar="FILE", help="the export file, or - for stdin")

    c = cmds.add_parser("rename", help="give a session a new title")
    c.add_argument("id", metavar="ID")
    c.add_argument("title", nargs="+", metavar="TITLE")

    c = cmds.add_parser("delete", help="delete a session")
    c.add_argument("id", metavar="ID")
    c.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")


def run(args: argparse.Namespace) -> int:
    try:
        store = SessionStore.open()
    except StoreError as err:
        return _fail(str(err))
    for warning in store.warnings:
        print(f"qwen3tui: warning: {warning}", file=sys.stderr)
    try:
        command = getattr(args, "sessions_command", None) or "list"
        code = _COMMANDS[command](store, args)
        if command in _CHANGES and not store.persistent:
            raise _CommandError(
                f"the change could not be saved to {store.path} (see the warning above)"
            )
        return code
    except (StoreError, _CommandError) as err:
        return _fail(str(err))
    finally:
        store.close()


def _fail(message: str) -> int:
    print(f"qwen3tui: {message}", file=sys.stderr)
    return EXIT_USAGE


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2))


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
        print("No saved sessions.")
        return EXIT_OK
    print(f"{'ID':<8}  {'UPDATED':<16}  {'MSGS':>4}  TITLE")
    for s in sessions:
        print(
            f"{s.id[:8]}  {_local_time(s.updated):<16}  {s.message_count:>4}"
            f"  {s.title or '(untitled)'}"
        )
    return EXIT_OK


def _show(store: SessionStore, args: argparse.Namespace) -> int:
    session_id = store.resolve_id(args.id)
    if args.json:
        _print_json(session_to_dict(store.get_session(session_id)))
    else:
        sys.stdout.write(store.export_markdown(session_id))
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
                    "updated": h.updated,
                }
                for h in hits
            ]
        )
        return EXIT_OK
    if not hits:
        print("No matches.")
    for h in hits:
        print(f"{h.session_id[:8]}  {h.title or '(untitled)'}")
        print(f"          {h.kind}: {' '.join(h.snippet.split())}")
    return EXIT_OK


def _export(store: SessionStore, args: argparse.Namespace) -> int:
    session_id = store.resolve_id(args.id)
    if args.format == "json":
        text = json.dumps(store.export_json(session_id), ensure_ascii=False, indent=2) + "\n"
    else:
        text = store.export_markdown(session_id)
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as err:
        raise _CommandError(f"cannot write {args.output}: {err.strerror or err}") from None
    print(f"exported {session_id[:8]} to {args.output}", file=sys.stderr)
    return EXIT_OK


def _import(store: SessionStore, args: argparse.Namespace) -> int:
    name = "stdin" if args.file == "-" else args.file
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise _CommandError(
            f"cannot read {name}: {getattr(err, 'strerror', None) or err}"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise _CommandError(f"{name} is not JSON ({err.msg} at line {err.lineno})") from None
    print(store.import_json(data))
    return EXIT_OK


def _rename(store: SessionStore, args: argparse.Namespace) -> int:
    session_id = store.resolve_id(args.id)
    store.rename_session(session_id, " ".join(args.title))
    return EXIT_OK


def _delete(store: SessionStore, args: argparse.Namespace) -> int:
    session_id = store.resolve_id(args.id)
    if not args.yes:
        title = store.get_session(session_id).title or "(untitled)"
        if not sys.stdin.isatty():
            raise _CommandError(
                f"not deleting {session_id[:8]} ({title}) without confirmation; pass --yes"
            )
        answer = input(f"Delete session {session_id[:8]} ({title})? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Not deleted.", file=sys.stderr)
            return EXIT_OK
    store.delete_session(session_id)
    print(f"deleted {session_id[:8]}", file=sys.stderr)
    return EXIT_OK


_CHANGES = ("import", "rename", "delete")
_COMMANDS = {
    "list": _list,
    "show": _show,
    "search": _search,
    "export": _export,
    "import": _import,
    "rename": _rename,
    "delete": _delete,
}
