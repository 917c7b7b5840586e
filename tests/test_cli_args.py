"""Which model and server the command line chooses, wherever the option is written."""

from __future__ import annotations

from qwen3tui.cli import build_parser
from qwen3tui.engine.info import DEFAULT_MODEL
from qwen3tui.engine_choice import choose
from qwen3tui.settings import UserSettings


def chosen(argv: list[str], session: dict | None = None) -> tuple[str | None, str | None]:
    args = build_parser().parse_args(argv)
    choose(args, session)
    return args.model, args.server


def test_model_given_before_the_subcommand_is_kept(qwen3tui_home):
    args = build_parser().parse_args(["--model", "/models/a", "--device", "cpu", "ask", "hi"])
    choose(args)
    assert (args.model, args.device) == ("/models/a", "cpu")


def test_model_given_after_the_subcommand_wins(qwen3tui_home):
    assert chosen(["--model", "/models/a", "ask", "--model", "/models/b", "hi"])[0] == "/models/b"


def test_without_model_the_settings_then_the_default_apply(qwen3tui_home):
    assert chosen(["ask", "hi"]) == (DEFAULT_MODEL, None)
    UserSettings(model="Qwen/Qwen3-4B").save()
    assert chosen([]) == ("Qwen/Qwen3-4B", None)


def test_a_server_comes_from_the_flag_the_environment_or_the_settings(qwen3tui_home, monkeypatch):
    # With a server, no model means "the first the server lists", never the local default.
    assert chosen(["ask", "--server", "http://gpu:8000/v1", "hi"]) == (None, "http://gpu:8000/v1")
    monkeypatch.setenv("QWEN3TUI_SERVER", "http://env:8000/v1")
    assert chosen(["--model", "qwen3:32b"]) == ("qwen3:32b", "http://env:8000/v1")
    monkeypatch.delenv("QWEN3TUI_SERVER")
    UserSettings(server="http://saved:8000/v1").save()
    assert chosen([]) == (None, "http://saved:8000/v1")


def test_a_session_started_on_a_server_continues_there_unless_told_otherwise(qwen3tui_home):
    session = {"server": "http://gpu:8000/v1", "server_model": "Qwen3-235B-A22B"}
    assert chosen(["--continue"], session) == ("Qwen3-235B-A22B", "http://gpu:8000/v1")
    assert chosen(["--continue", "--model", "/models/local"], session) == ("/models/local", None)
