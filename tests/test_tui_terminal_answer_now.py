"""Answer now in a real terminal (tmux): Ctrl+G while the model thinks ends the thinking, the
model answers, and the saved reply records that the user cut the thinking short.

The checkpoint's output is scripted (`chain_checkpoint.ENDLESS`): it thinks " Hmm ok Hmm ok…"
and never ends its thinking by itself, and answers "Answer" once the early-stop sentence is in.
With no thinking budget and a 32,768-token context, only Ctrl+G can bring the answer: the test
waits on the screen, not on time.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from chain_checkpoint import ENDLESS, write_chain_checkpoint
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
from qwen3tui.store import SessionStore

pytestmark = pytest.mark.slow

CONTEXT = 32768


@pytest.fixture(scope="module")
def endless_checkpoint(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path) -> Path:
    return write_chain_checkpoint(tmp_path_factory.mktemp("endless"), shared_dir, ENDLESS)


def test_ctrl_g_while_thinking_answers_now_and_the_reply_says_so(
    tmux: Tmux,  # noqa: F811 -- the fixture
    tmp_path: Path,
    endless_checkpoint: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    UserSettings(turn=TurnSettings(thinking_budget=None, max_tokens=CONTEXT)).save(
        home / "settings.toml"
    )
    start(tmux, home, endless_checkpoint, context=CONTEXT)
    wait_for(tmux, lambda s: "ctx 0 / 32,768" in s, "the model to load")
    type_line(tmux, "Think it over")
    wait_for(
        tmux,
        lambda s: re.search(r"Thinking… \d+", s) is not None and "Answer now" in s,
        "the model to think, with the answer-now key in the footer",
    )
    keys(tmux, "C-g")
    final = wait_for(
        tmux,
        lambda s: "answered early" in s and "tok/s ·" in s.split("answered early")[-1],
        "the answer and the end of the reply",
    )
    assert "Answer" in final.split("answered early")[-1]
    quit_app(tmux)

    with SessionStore.open(home / "sessions.db") as store:
        (summary,) = store.list_sessions()
        user, reply = store.get_session(summary.id).messages
    assert user.content == "Think it over"
    assert reply.status == "complete" and reply.content == "Answer"
    assert reply.usage["thinking_cut_by_user"] is True
    assert reply.usage["thinking_budget_hit"] is False
    assert reply.thinking.endswith("give the solution based on the thinking directly now.")
