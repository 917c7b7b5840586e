"""Edit and branch in a real terminal (tmux): Ctrl+Up puts the last message in the composer,
Enter sends the edit as a new version (`‹ 2/2 ›`), Alt+Left shows the original again, and the
branch shown is the one `--continue` opens."""

from __future__ import annotations

from pathlib import Path

import pytest
from tmux_terminal import (  # noqa: F401 -- tmux is a fixture
    Tmux,
    keys,
    quit_app,
    start,
    tmux,
    type_line,
    wait_for,
)

from qwen3tui.settings import TurnSettings, UserSettings

pytestmark = pytest.mark.slow


def replied_after(text: str, screen: str) -> bool:
    """The reply after `text` has finished (its meta line shows)."""
    return text in screen and "first token" in screen.split(text)[-1]


def test_edit_makes_a_new_version_and_alt_left_goes_back(
    tmux: Tmux,  # noqa: F811 -- the fixture
    tmp_path: Path,
    tiny_checkpoint: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    UserSettings(turn=TurnSettings(thinking=False, max_tokens=12)).save(home / "settings.toml")
    start(tmux, home, tiny_checkpoint)
    wait_for(tmux, lambda s: "ctx 0 / 1,024" in s, "the model to load")
    type_line(tmux, "Walrus question")
    wait_for(tmux, lambda s: replied_after("Walrus question", s), "the first reply")

    keys(tmux, "C-Up")
    wait_for(tmux, lambda s: "editing message 1" in s, "the editing state")
    keys(tmux, "C-u")  # the composer holds the old text; start the new version afresh
    type_line(tmux, "Narwhal question")
    edited = wait_for(
        tmux,
        lambda s: replied_after("Narwhal question", s) and "‹ 2/2 ›" in s,
        "the edited version's reply",
    )
    assert "Walrus question" not in edited

    keys(tmux, "M-Left")
    back = wait_for(
        tmux, lambda s: "Walrus question" in s and "‹ 1/2 ›" in s, "the original version"
    )
    assert "Narwhal question" not in back
    quit_app(tmux)

    start(tmux, home, tiny_checkpoint, "--continue")
    resumed = wait_for(
        tmux, lambda s: replied_after("Walrus question", s), "the branch that was shown"
    )
    assert "‹ 1/2 ›" in resumed and "Narwhal question" not in resumed
    quit_app(tmux)
