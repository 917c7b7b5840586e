"""A conversation is a tree: /retry and edits keep what they replace as a sibling branch."""

from __future__ import annotations

import json
import sqlite3

import pytest
from store_helpers import add_reply

from qwen3tui.store import LATEST_VERSION, SessionStore, StoreError
from qwen3tui.store.export import EXPORT_VERSION
from qwen3tui.store.schema import migrate


@pytest.fixture
def store(tmp_path):
    s = SessionStore.open(tmp_path / "sessions.db")
    yield s
    s.close()


def contents(store: SessionStore, session_id: str) -> list[str]:
    return [m.content for m in store.get_session(session_id).messages]


def two_turns(store: SessionStore) -> str:
    s = store.create_session("m")
    store.add_user_message(s.id, "Q1")
    add_reply(store, s.id, "A1")
    store.add_user_message(s.id, "Q2")
    add_reply(store, s.id, "A2")
    return s.id


def test_each_message_follows_the_one_before_it_on_one_branch(store):
    sid = two_turns(store)
    messages = store.get_session(sid).messages
    assert [m.parent_id for m in messages] == [None, *(m.id for m in messages[:-1])]
    assert [m.order for m in messages] == [0, 1, 2, 3]
    assert all((m.sibling_position, m.sibling_count) == (1, 1) for m in messages)
    assert store.get_session(sid).active_leaf == messages[-1].id


def test_a_retried_reply_is_a_sibling_of_the_old_one_which_is_kept(store):
    sid = two_turns(store)
    old = store.get_session(sid).messages[3]
    new = store.begin_reply(sid, thinking_enabled=False, budget=None, sampling={}, at=3)
    store.finish_reply(new, thinking="", answer="A2 again", outcome="complete")
    session = store.get_session(sid)
    assert [m.content for m in session.messages] == ["Q1", "A1", "Q2", "A2 again"]
    assert store.siblings(new) == [old.id, new]
    assert store.branch_info(new) == (2, 2) and store.branch_info(old.id) == (1, 2)
    assert (session.messages[3].sibling_position, session.messages[3].sibling_count) == (2, 2)
    # The conversation the model is given follows the active branch.
    assert store.conversation(sid)[-1] == {"role": "assistant", "content": "A2 again"}


def test_an_edited_first_message_starts_a_sibling_root(store):
    sid = two_turns(store)
    edited = store.add_user_message(sid, "Q1 edited", at=0)
    add_reply(store, sid, "A1 for the edit")
    assert contents(store, sid) == ["Q1 edited", "A1 for the edit"]
    first = store.get_session(sid).messages[0]
    assert first.id == edited and first.parent_id is None
    assert (first.sibling_position, first.sibling_count) == (2, 2)
    assert store.get_session(sid).title == "Q1"  # the first message named it; still does


def test_switching_to_a_sibling_shows_its_most_recent_leaf(store):
    sid = two_turns(store)
    q2 = store.get_session(sid).messages[2].id
    store.add_user_message(sid, "Q2 edited", at=2)
    add_reply(store, sid, "A2 for the edit")
    store.switch_branch(sid, q2)
    assert contents(store, sid) == ["Q1", "A1", "Q2", "A2"]
    # The branch continues from where the switch went, and that is what a new turn follows.
    store.add_user_message(sid, "Q3")
    assert contents(store, sid) == ["Q1", "A1", "Q2", "A2", "Q3"]
    edited = store.siblings(q2)[1]
    store.switch_branch(sid, edited)
    assert contents(store, sid) == ["Q1", "A1", "Q2 edited", "A2 for the edit"]
    # Switching to an earlier message of a branch goes to the newest leaf under it.
    store.switch_branch(sid, store.get_session(sid).messages[0].id)
    assert contents(store, sid)[-1] == "Q3"


def test_switching_to_a_message_of_another_session_is_refused(store):
    a, b = two_turns(store), two_turns(store)
    with pytest.raises(StoreError):
        store.switch_branch(a, store.get_session(b).messages[0].id)
    with pytest.raises(StoreError):
        store.siblings(123456)
    with pytest.raises(StoreError):
        store.add_user_message(a, "too far", at=9)


def test_search_finds_text_in_every_branch(store):
    sid = two_turns(store)
    store.begin_reply(sid, thinking_enabled=False, budget=None, sampling={}, at=3)
    assert [h.session_id for h in store.search("A2")] == [sid]  # the branch not shown


def test_the_whole_tree_is_readable_in_creation_order(store):
    sid = two_turns(store)
    retried = add_reply_at(store, sid, "A2 again", at=3)
    tree = store.get_tree(sid)
    assert [m.content for m in tree.messages] == ["Q1", "A1", "Q2", "A2", "A2 again"]
    assert tree.messages[4].parent_id == tree.messages[2].id and tree.active_leaf == retried


def add_reply_at(store: SessionStore, sid: str, answer: str, *, at: int) -> int:
    reply = store.begin_reply(sid, thinking_enabled=False, budget=None, sampling={}, at=at)
    store.finish_reply(reply, thinking="", answer=answer, outcome="complete")
    return reply


def test_json_export_and_import_keep_the_whole_tree_and_the_active_branch(store):
    sid = two_turns(store)
    add_reply_at(store, sid, "A2 again", at=3)
    store.add_user_message(sid, "Q1 edited", at=0)
    store.switch_branch(sid, store.siblings(store.get_session(sid).messages[0].id)[0])
    data = store.export_json(sid)
    assert data["version"] == EXPORT_VERSION == 2
    messages = data["session"]["messages"]
    assert [(m["content"], m["parent"]) for m in messages] == [
        ("Q1", None),
        ("A1", 0),
        ("Q2", 1),
        ("A2", 2),
        ("A2 again", 2),
        ("Q1 edited", None),
    ]
    assert data["session"]["active_leaf"] == 4
    copy = store.import_json(json.loads(json.dumps(data)))
    assert contents(store, copy) == ["Q1", "A1", "Q2", "A2 again"]
    assert [m["content"] for m in store.export_json(copy)["session"]["messages"]] == [
        m["content"] for m in messages
    ]
    # Markdown is the active branch only.
    md = store.export_markdown(sid)
    assert "A2 again" in md and "\nA2\n" not in md and "Q1 edited" not in md


def test_a_version_1_export_imports_as_one_branch(store):
    sid = two_turns(store)
    data = store.export_json(sid)
    data["version"] = 1
    for m in data["session"]["messages"]:
        del m["parent"]
    del data["session"]["active_leaf"]
    copy = store.import_json(data)
    session = store.get_session(copy)
    assert [m.content for m in session.messages] == ["Q1", "A1", "Q2", "A2"]
    assert session.messages[3].parent_id == session.messages[2].id
    store.add_user_message(copy, "Q3")  # continues at the end
    assert contents(store, copy)[-1] == "Q3"


@pytest.mark.parametrize(
    "mangle, complaint",
    [
        (lambda s: s["messages"][1].update(parent=1), "messages[1].parent"),
        (lambda s: s["messages"][0].update(parent=-1), "messages[0].parent"),
        (lambda s: s["messages"][2].update(parent="0"), "messages[2].parent"),
        (lambda s: s.update(active_leaf=4), "active_leaf"),
    ],
)
def test_an_export_whose_tree_does_not_hold_together_is_refused(store, mangle, complaint):
    data = store.export_json(two_turns(store))
    mangle(data["session"])
    with pytest.raises(StoreError) as caught:
        store.import_json(data)
    assert complaint in str(caught.value)


def test_a_store_of_the_previous_release_becomes_one_branch_per_session(tmp_path):
    """A v4 store (what the release before branches wrote) migrates: each message under the one
    before it, the last one active, and search, retry and new turns work on it."""
    path = tmp_path / "sessions.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=4)
    conn.execute(
        "INSERT INTO sessions (id, title, created, updated, model) VALUES"
        " ('aa11', 'Old chat', 't', 't', 'm'), ('bb22', 'Empty', 't', 't', 'm')"
    )
    for order, (role, content) in enumerate(
        [("user", "tell me about tusks"), ("assistant", "Tusks are teeth"), ("user", "more")]
    ):
        conn.execute(
            "INSERT INTO messages (session_id, ord, role, content, created, updated)"
            " VALUES ('aa11', ?, ?, ?, 't', 't')",
            (order, role, content),
        )
    conn.close()
    with SessionStore.open(path) as store:
        assert LATEST_VERSION == 5
        session = store.get_session("aa11")
        assert [m.content for m in session.messages] == [
            "tell me about tusks",
            "Tusks are teeth",
            "more",
        ]
        assert [m.parent_id for m in session.messages] == [
            None,
            *(m.id for m in session.messages[:2]),
        ]
        assert session.active_leaf == session.messages[-1].id
        assert store.get_session("bb22").messages == []
        # The search index and its triggers survived the migration.
        assert [h.session_id for h in store.search("tusks")] == ["aa11"]
        add_reply_at(store, "aa11", "Walruses grow long ones", at=1)
        assert [h.session_id for h in store.search("walruses")] == ["aa11"]
        assert contents(store, "aa11") == ["tell me about tusks", "Walruses grow long ones"]
        assert store.branch_info(store.get_session("aa11").messages[1].id) == (2, 2)
        store.add_user_message("bb22", "first words")
        assert contents(store, "bb22") == ["first words"]


def test_a_branch_can_be_read_before_switching_to_it(store):
    sid = two_turns(store)
    q2 = store.get_session(sid).messages[2].id
    store.add_user_message(sid, "Q2 edited", at=2)
    preview = store.get_session(sid, through=q2)
    assert [m.content for m in preview.messages] == ["Q1", "A1", "Q2", "A2"]
    assert contents(store, sid)[-1] == "Q2 edited"  # nothing was switched
