"""Slash commands: parsing, validation, the soft switch at the end of a message, suggestions."""

from __future__ import annotations

import pytest

from qwen3tui.tui import slash_commands as sc


def test_every_command_in_the_issue_is_listed_once() -> None:
    names = [c.name for c in sc.COMMANDS]
    assert sorted(names) == sorted(
        [
            "think",
            "no_think",
            "budget",
            "thinking",
            "new",
            "sessions",
            "resume",
            "rename",
            "delete",
            "export",
            "system",
            "set",
            "file",
            "retry",
            "edit",
            "branch",
            "copy",
            "model",
            "theme",
            "clear",
            "help",
            "quit",
        ]
    )
    assert len(names) == len(set(names))
    assert ("/budget N|off", sc.COMMANDS_BY_NAME["budget"].description) in sc.help_rows()


def test_edit_takes_a_message_number_and_branch_a_direction() -> None:
    assert sc.parse("/edit").value is None and sc.parse("/edit 2").value == 2
    assert sc.parse("/branch prev").value == -1 and sc.parse("/branch next").value == 1
    for bad in ("/edit 0", "/edit two", "/branch", "/branch up"):
        with pytest.raises(sc.SlashError):
            sc.parse(bad)


@pytest.mark.parametrize("text", ["/think", "  /think  ", "/THINK"])
def test_a_bare_command_parses_to_its_name(text: str) -> None:
    assert sc.parse(text).name == "think"


def test_is_command_tells_commands_from_messages() -> None:
    assert sc.is_command("/help")
    assert not sc.is_command("explain x /no_think")
    assert not sc.is_command("//not a command, a message starting with a slash")


@pytest.mark.parametrize(
    ("arg", "budget"),
    [("2048", 2048), ("off", None), ("unlimited", None), ("2k", 2048), ("1_000", 1000)],
)
def test_budget_values(arg: str, budget: int | None) -> None:
    assert sc.parse(f"/budget {arg}").value == budget


def test_a_budget_of_zero_is_allowed_and_exact() -> None:
    assert sc.parse("/budget 0").value == 0
    assert sc.parse("/budget 30").value == 30


@pytest.mark.parametrize("text", ["/budget", "/budget lots", "/budget -5", "/budget 1.5"])
def test_bad_budgets_are_refused_with_a_one_line_message(text: str) -> None:
    with pytest.raises(sc.SlashError) as err:
        sc.parse(text)
    assert "\n" not in str(err.value) and "/budget" in str(err.value)


def test_set_parses_typed_values() -> None:
    assert sc.parse("/set temperature 0.3").value == ("temperature", 0.3)
    name, value = sc.parse("/set top_k 40").value
    assert (name, value) == ("top_k", 40) and isinstance(value, int)
    assert sc.parse("/set max_tokens 256").value == ("max_tokens", 256)
    assert sc.parse("/set seed 18446744073709551615").value == ("seed", 2**64 - 1)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("/set", "needs NAME VALUE"),
        ("/set temperature", "needs NAME VALUE"),
        ("/set warmth 1", "unknown setting"),
        ("/set top_k 1.5", "top_k = 1.5 is not allowed: use a whole number ≥ 0"),
        ("/set temperature hot", "temperature = hot is not allowed: use a number ≥ 0"),
        ("/set temperature nan", "temperature = nan is not allowed"),
        ("/set temperature -1", "temperature = -1 is not allowed"),
        ("/set top_p 1.5", r"top_p = 1.5 is not allowed: use a number > 0 and ≤ 1"),
        ("/set top_p 0", r"top_p = 0 is not allowed"),
        ("/set min_p 5", "min_p = 5 is not allowed: use a number from 0 to 1"),
        ("/set presence_penalty 1e308", "presence_penalty = 1e308 is not allowed"),
        ("/set seed 99999999999999999999999", "seed = 99999999999999999999999 is not allowed"),
        ("/set max_tokens 0", "max_tokens = 0 is not allowed: use a whole number ≥ 1"),
    ],
)
def test_bad_settings_say_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(sc.SlashError, match=fragment):
        sc.parse(text)


def test_export_format_and_optional_path() -> None:
    assert sc.parse("/export md ~/notes/chat.md").value == ("md", "~/notes/chat.md")
    assert sc.parse("/export JSON").value == ("json", "")
    with pytest.raises(sc.SlashError, match="md\\|json"):
        sc.parse("/export pdf")


@pytest.mark.parametrize("name", ["resume", "rename"])
def test_commands_that_need_an_argument_say_so(name: str) -> None:
    with pytest.raises(sc.SlashError, match=f"/{name} needs"):
        sc.parse(f"/{name}")


def test_commands_without_arguments_refuse_one() -> None:
    with pytest.raises(sc.SlashError, match="takes no argument"):
        sc.parse("/new please")


def test_unknown_command_suggests_the_nearest() -> None:
    with pytest.raises(sc.SlashError, match="unknown command /thnk -- did you mean /think"):
        sc.parse("/thnk")
    with pytest.raises(sc.SlashError, match="/help lists them"):
        sc.parse("/zzz")


def test_system_takes_free_text() -> None:
    assert sc.parse("/system You are terse.  ").arg == "You are terse."
    assert sc.parse("/system").arg == ""


@pytest.mark.parametrize(
    ("text", "switch"),
    [
        ("explain x /no_think", "no_think"),
        ("explain x /think", "think"),
        ("explain x /think   ", "think"),
        ("explain /no_think x", None),
        ("/think", None),  # alone it is a command, not a message
        ("explain x/think", None),
    ],
)
def test_soft_switch_at_the_end_of_a_message(text: str, switch: str | None) -> None:
    kept, found = sc.split_soft_switch(text)
    assert kept == text  # Qwen expects to see the switch in the message
    assert found == switch


def test_suggestions_follow_the_typed_prefix() -> None:
    assert [c.name for c in sc.suggest("/")] == [c.name for c in sc.COMMANDS][:8]
    assert [c.name for c in sc.suggest("/re")] == ["resume", "rename", "retry"]
    assert [c.name for c in sc.suggest("/nt")] == ["no_think"]  # typo: letters in order
    assert sc.suggest("/resume abc") == []  # done typing the name
    assert sc.suggest("hello") == []
