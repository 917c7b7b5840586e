"""Export to JSON and Markdown; import JSON back, exactly."""

from __future__ import annotations

import json

import pytest
from store_helpers import add_reply

from qwen3tui.store import ImportFormatError, SessionStore


@pytest.fixture
def store(tmp_path):
    s = SessionStore.open(tmp_path / "sessions.db")
    yield s
    s.close()


@pytest.fixture
def session_id(store):
    s = store.create_session("Qwen/Qwen3-1.7B", "Be kind.", {"thinking": True, "budget": 64})
    store.add_user_message(s.id, "Why is the sky blue? ünïcödé ✓")
    add_reply(
        store,
        s.id,
        "Short wavelengths scatter more.",
        "Rayleigh scattering... </details> oops",
        budget=64,
        sampling={"temperature": 0.6},
        usage={"prompt_tokens": 12, "thinking_tokens": 5, "answer_tokens": 6},
        timings={"ttft_s": 0.2, "decode_tok_s": 30.5},
    )
    store.add_user_message(s.id, "And sunsets?")
    add_reply(store, s.id, "Longer path thro", outcome="cancelled")
    return s.id


def without_id(export: dict) -> dict:
    return {**export, "session": {k: v for k, v in export["session"].items() if k != "id"}}


def test_json_export_imports_back_exactly_under_a_new_id(store, session_id):
    exported = store.export_json(session_id)
    text = json.dumps(exported)  # through real JSON text, as a file would be
    new_id = store.import_json(json.loads(text))
    assert new_id != session_id
    again = store.export_json(new_id)
    assert again["session"]["id"] == new_id
    assert without_id(again) == without_id(exported)
    # The imported copy is a normal session: searchable, continuable.
    assert {h.session_id for h in store.search("wavelengths")} == {session_id, new_id}
    store.add_user_message(new_id, "more")
    assert store.get_session(new_id).messages[-1].order == 4


def test_json_export_has_the_documented_message_fields(store, session_id):
    data = store.export_json(session_id)
    assert data["format"] == "qwen3tui-session" and data["version"] == 2
    s = data["session"]
    # One branch: each message follows the one before it, the last is the active leaf.
    assert [m["parent"] for m in s["messages"]] == [None, 0, 1, 2] and s["active_leaf"] == 3
    assert (s["id"], s["model"], s["system_prompt"], s["message_count"]) == (
        session_id,
        "Qwen/Qwen3-1.7B",
        "Be kind.",
        4,
    )
    reply = s["messages"][1]
    assert reply["content"] == "Short wavelengths scatter more."
    assert reply["thinking"].startswith("Rayleigh")
    assert (reply["status"], reply["thinking_enabled"], reply["budget"]) == ("complete", True, 64)
    assert reply["usage"]["answer_tokens"] == 6 and "created" in reply
    assert s["messages"][3]["status"] == "cancelled"


def test_markdown_export_folds_thinking_into_a_details_block(store, session_id):
    md = store.export_markdown(session_id)
    assert md.startswith("# Why is the sky blue?")
    assert "> Be kind." in md
    details = md.index("<details>")
    assert md.index("## User") < details < md.index("Short wavelengths scatter more.")
    block = md[details : md.index("</details>\n")]
    assert "<summary>Thinking</summary>" in block and "Rayleigh scattering" in block
    assert md.count("</details>") == 1  # the one inside the reasoning was defused
    assert "## Assistant (stopped)" in md and "Longer path thro" in md


@pytest.mark.parametrize(
    "mangle, complaint",
    [
        (lambda d: [], "top level"),
        (lambda d: {**d, "format": "other"}, "format"),
        (lambda d: {**d, "version": 99}, "version"),
        (lambda d: {**d, "session": {**d["session"], "model": 3}}, "session.model"),
        (
            lambda d: {**d, "session": {**d["session"], "messages": [{"role": "robot"}]}},
            "messages[0].role",
        ),
        (
            lambda d: {
                **d,
                "session": {
                    **d["session"],
                    "messages": [{**d["session"]["messages"][0], "status": "weird"}],
                },
            },
            "messages[0].status",
        ),
    ],
)
def test_importing_something_else_fails_with_one_line_naming_the_problem(
    store, session_id, mangle, complaint
):
    before = len(store.list_sessions())
    with pytest.raises(ImportFormatError) as caught:
        store.import_json(mangle(store.export_json(session_id)))
    assert complaint in str(caught.value) and "\n" not in str(caught.value)
    assert len(store.list_sessions()) == before


def test_markdown_names_the_model_of_a_reply_written_after_a_switch(store):
    s = store.create_session("Qwen/Qwen3-1.7B")
    store.add_user_message(s.id, "first")
    first = store.begin_reply(s.id, thinking_enabled=False, budget=None, sampling={},
                              model="Qwen/Qwen3-1.7B")  # fmt: skip
    store.finish_reply(first, thinking="", answer="one", outcome="complete")
    store.add_user_message(s.id, "second")
    second = store.begin_reply(s.id, thinking_enabled=False, budget=None, sampling={},
                               model="Qwen/Qwen3-4B")  # fmt: skip
    store.finish_reply(second, thinking="", answer="two", outcome="length")
    text = store.export_markdown(s.id)
    assert "## Assistant\n\none" in text
    assert "## Assistant — Qwen/Qwen3-4B (cut off (max tokens))\n\ntwo" in text
