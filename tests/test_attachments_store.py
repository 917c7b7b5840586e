"""Files attached to a message: saved apart from the typed text, given back to the model
expanded, migrated into a store of the previous release, exported and imported."""

from __future__ import annotations

import copy
import sqlite3
from pathlib import Path

import pytest

from qwen3tui.store import Attachment, ImportFormatError, SessionStore, expand_prompt
from qwen3tui.store.attachments import fenced_block, language_for
from qwen3tui.store.export import export_json, export_markdown, parse_export
from qwen3tui.store.schema import LATEST_VERSION, migrate

NOTES = Attachment(name="notes.py", size=24, lines=2, text="x = 1\nprint('walrus')\n")
README = Attachment(name="docs/README.md", size=31, lines=3, text="# Hi\n```sh\nrun it\n```")


def test_the_model_reads_each_file_as_a_named_fenced_block_before_the_question():
    prompt = expand_prompt("What does it print?", [NOTES])
    assert prompt == (
        "File: notes.py (24 bytes, 2 lines)\n"
        "```python\n"
        "x = 1\nprint('walrus')\n"
        "```\n\n"
        "What does it print?"
    )


def test_a_file_holding_a_fence_gets_a_longer_fence_so_it_cannot_close_the_block():
    block = fenced_block(README)
    assert block.splitlines()[1] == "````markdown"
    assert block.endswith("\n````")


def test_a_message_without_files_is_sent_as_typed():
    assert expand_prompt("just text", []) == "just text"


def test_languages_are_guessed_from_the_extension_or_the_name():
    assert [language_for(n) for n in ("a.rs", "Dockerfile", "x.TOML", "data.unknown")] == [
        "rust",
        "dockerfile",
        "toml",
        "",
    ]


def test_the_chip_names_the_file_its_size_and_lines():
    big = Attachment(name="log.txt", size=12_345, lines=1, text="…")
    assert NOTES.chip == "[notes.py · 24 bytes · 2 lines]"
    assert big.chip == "[log.txt · 12.3 KB · 1 line]"


def test_a_saved_message_keeps_the_typed_text_and_its_files_apart(tmp_path):
    with SessionStore.open(tmp_path / "s.db") as store:
        s = store.create_session("m")
        store.add_user_message(s.id, "What does it print?", [NOTES, README])
        message = store.get_session(s.id).messages[0]
        assert message.content == "What does it print?"
        assert message.attachments == [NOTES, README]
        # The model is given the session back exactly as it read the message.
        assert store.conversation(s.id) == [
            {"role": "user", "content": expand_prompt("What does it print?", [NOTES, README])}
        ]
        assert store.get_session(s.id).title == "What does it print?"  # typed text names it


def test_a_store_of_the_previous_release_migrates_to_messages_without_files(tmp_path):
    path = tmp_path / "sessions.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=3)  # the current release's store
    conn.execute(
        "INSERT INTO sessions (id, title, created, updated, model) VALUES"
        " ('aa11', 'Old chat', 't', 't', 'Qwen/Qwen3-1.7B')"
    )
    conn.execute(
        "INSERT INTO messages (session_id, ord, role, content, created, updated)"
        " VALUES ('aa11', 0, 'user', 'tell me about tusks', 't', 't')"
    )
    conn.close()
    with SessionStore.open(path) as store:
        old = store.get_session("aa11").messages[0]
        assert (old.content, old.attachments) == ("tell me about tusks", [])
        store.add_user_message("aa11", "and this?", [NOTES])
        assert store.get_session("aa11").messages[1].attachments == [NOTES]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
    conn.close()


def _session_with_files(tmp_path: Path):
    store = SessionStore.open(tmp_path / "s.db")
    s = store.create_session("m")
    store.add_user_message(s.id, "Compare these.", [NOTES, README])
    return store, store.get_session(s.id)


def test_markdown_export_shows_the_chip_line_and_the_file_in_a_fence(tmp_path):
    store, session = _session_with_files(tmp_path)
    md = export_markdown(session)
    assert "Compare these.\n\n**Attached:** `notes.py` · 24 bytes · 2 lines\n" in md
    assert "```python\nx = 1\nprint('walrus')\n```\n" in md
    assert "````markdown\n# Hi\n```sh\nrun it\n```\n````\n" in md
    store.close()


def test_json_export_and_import_keep_the_files(tmp_path):
    store, session = _session_with_files(tmp_path)
    data = export_json(session)
    assert data["session"]["messages"][0]["attachments"] == [NOTES.to_dict(), README.to_dict()]
    new_id = store.import_json(copy.deepcopy(data))
    assert store.get_session(new_id).messages[0].attachments == [NOTES, README]
    store.close()


def test_an_export_without_attachments_still_imports(tmp_path):
    store, session = _session_with_files(tmp_path)
    data = export_json(session)
    del data["session"]["messages"][0]["attachments"]
    assert parse_export(data).messages[0].attachments == []
    store.close()


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("not a list", "session.messages[0].attachments must be an array"),
        ([{"name": "a", "size": "1", "lines": 1, "text": ""}], "'size' must be int"),
        ([{"name": "a", "size": 1, "lines": -1, "text": ""}], "'lines' must not be negative"),
        ([{"name": "", "size": 1, "lines": 1, "text": ""}], "'name' must not be empty"),
        ([{"name": "a", "size": 1, "lines": 1}], "'text' must be str"),
        (["a"], "attachments[0] is not valid: an attachment must be an object"),
    ],
)
def test_import_refuses_malformed_attachments_in_one_line(tmp_path, bad, says):
    store, session = _session_with_files(tmp_path)
    data = export_json(session)
    data["session"]["messages"][0]["attachments"] = bad
    with pytest.raises(ImportFormatError, match="^not a qwen3tui session export: ") as err:
        store.import_json(data)
    assert says in str(err.value) and "\n" not in str(err.value)
    assert len(store.list_sessions()) == 1  # nothing was written
    store.close()


def test_import_refuses_attachments_on_a_reply(tmp_path):
    store, session = _session_with_files(tmp_path)
    data = export_json(session)
    data["session"]["messages"].append(
        {"role": "assistant", "content": "ok", "created": "t", "updated": "t"}
        | {"attachments": [NOTES.to_dict()]}
    )
    with pytest.raises(ImportFormatError, match="only allowed on a user message"):
        parse_export(data)
    store.close()
