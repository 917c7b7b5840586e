"""Which model the command line chooses, wherever the option is written."""

from __future__ import annotations

from qwen3tui.cli import build_parser, chosen_model
from qwen3tui.engine.info import DEFAULT_MODEL
from qwen3tui.settings import UserSettings


def test_model_given_before_the_subcommand_is_kept(qwen3tui_home):
    args = build_parser().parse_args(["--model", "/models/a", "--device", "cpu", "ask", "hi"])
    assert (chosen_model(args), args.device) == ("/models/a", "cpu")


def test_model_given_after_the_subcommand_wins(qwen3tui_home):
    args = build_parser().parse_args(["--model", "/models/a", "ask", "--model", "/models/b", "hi"])
    assert chosen_model(args) == "/models/b"


def test_without_model_the_settings_then_the_default_apply(qwen3tui_home):
    args = build_parser().parse_args(["ask", "hi"])
    assert chosen_model(args) == DEFAULT_MODEL
    UserSettings(model="Qwen/Qwen3-4B").save()
    assert chosen_model(build_parser().parse_args([])) == "Qwen/Qwen3-4B"
