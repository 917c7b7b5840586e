"""`qwen3tui sessions` with versions: `show` prints the version last shown and says which
messages have others; a search hit in another version is shown with `show --message`."""

from __future__ import annotations

import json

from store_helpers import add_reply

from qwen3tui.cli import main
from qwen3tui.store import Outcome, SessionStore


def run_cli(capsys, *argv):
    code = main(["sessions", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def retried_session() -> str:
    """A question whose first reply (about gondolas) was retried (about canals)."""
    with SessionStore.open() as store:
        s = store.create_session("Qwen/Qwen3-1.7B")
        store.add_user_message(s.id, "Tell me about Venice")
        add_reply(store, s.id, "Venice has gondolas.")
        retry = store.begin_reply(s.id, thinking_enabled=False, budget=None, sampling={}, at=1)
        store.finish_reply(
            retry, thinking="", answer="Venice has canals.", outcome=Outcome.COMPLETE
        )
        return s.id


def test_show_prints_the_version_last_shown_and_marks_versions(qwen3tui_home, capsys):
    sid = retried_session()
    code, out, _ = run_cli(capsys, "show", sid[:8])
    assert code == 0
    assert "Venice has canals." in out and "gondolas" not in out
    assert "*Version 2 of 2*" in out


def test_a_hit_in_another_version_is_shown_with_show_message(qwen3tui_home, capsys):
    sid = retried_session()
    code, out, _ = run_cli(capsys, "search", "gondolas", "--json")
    (hit,) = json.loads(out)
    assert hit["id"] == sid and isinstance(hit["message_id"], int)
    code, out, _ = run_cli(capsys, "show", sid, "--message", str(hit["message_id"]))
    assert code == 0 and "Venice has gondolas." in out and "canals" not in out
    assert "*Version 1 of 2*" in out
    code, out, _ = run_cli(capsys, "show", sid, "--json", "--message", str(hit["message_id"]))
    assert [m["content"] for m in json.loads(out)["messages"]] == [
        "Tell me about Venice",
        "Venice has gondolas.",
    ]
    # Only shown: the version last shown in the chat is still the retried one.
    assert "canals" in run_cli(capsys, "show", sid)[1]


def test_show_message_of_another_session_is_one_line(qwen3tui_home, capsys):
    sid = retried_session()
    code, _, err = run_cli(capsys, "show", sid, "--message", "999999")
    assert code != 0 and "no message 999999" in err and len(err.strip().splitlines()) == 1
