"""Sessions and messages: create, list, titles, ids by prefix, conversation, edits."""

from __future__ import annotations

import pytest
from store_helpers import add_reply

from qwen3tui.store import SessionLookupError, SessionStore, StoreError, make_title


@pytest.fixture
def store(tmp_path):
    s = SessionStore.open(tmp_path / "sessions.db")
    yield s
    s.close()


def add_exchange(store, session_id, question, answer, thinking=""):
    store.add_user_message(session_id, question)
    add_reply(
        store, session_id, answer, thinking, usage={"answer_tokens": 3}, timings={"ttft_s": 0.1}
    )


def test_a_session_keeps_model_system_prompt_and_settings(store):
    s = store.create_session("Qwen/Qwen3-1.7B", "Be brief.", {"thinking": False, "budget": 512})
    loaded = store.get_session(s.id)
    assert (loaded.model, loaded.system_prompt, loaded.settings) == (
        "Qwen/Qwen3-1.7B",
        "Be brief.",
        {"thinking": False, "budget": 512},
    )
    assert loaded.title == "" and loaded.messages == []
    assert loaded.created == s.created


def test_messages_come_back_in_order_with_every_field(store):
    s = store.create_session("m")
    store.add_user_message(s.id, "What is 2+2?")
    add_reply(
        store,
        s.id,
        "4",
        "Two plus two",
        budget=256,
        sampling={"temperature": 0.6},
        usage={"prompt_tokens": 10, "answer_tokens": 1},
        timings={"decode_tok_s": 50.0},
    )
    user, reply = store.get_session(s.id).messages
    assert (user.order, user.role, user.content, user.status, user.thinking_enabled) == (
        0,
        "user",
        "What is 2+2?",
        "complete",
        None,
    )
    assert (reply.order, reply.role, reply.content, reply.thinking, reply.status) == (
        1,
        "assistant",
        "4",
        "Two plus two",
        "complete",
    )
    assert (reply.thinking_enabled, reply.budget, reply.sampling) == (
        True,
        256,
        {"temperature": 0.6},
    )
    assert reply.usage == {"prompt_tokens": 10, "answer_tokens": 1}
    assert reply.timings == {"decode_tok_s": 50.0}
    assert reply.error is None and reply.created <= reply.updated


def test_the_title_comes_from_the_first_user_message_trimmed(store):
    s = store.create_session("m")
    store.add_user_message(s.id, "   How do\n  magnets   work?  ")
    store.add_user_message(s.id, "And why?")
    assert store.get_session(s.id).title == "How do magnets work?"


def test_a_long_first_message_gives_a_short_title_cut_at_a_word():
    title = make_title("word " * 40)
    assert len(title) <= 61 and title.endswith("…") and "wor…" not in title


def test_a_renamed_title_stays_and_an_empty_one_is_refused(store):
    s = store.create_session("m")
    store.rename_session(s.id, "  My   chat ")
    store.add_user_message(s.id, "first message")
    assert store.get_session(s.id).title == "My chat"
    with pytest.raises(StoreError):
        store.rename_session(s.id, "   ")


def test_sessions_are_listed_most_recently_updated_first_with_message_counts(store):
    old = store.create_session("m")
    new = store.create_session("m")
    assert [x.id for x in store.list_sessions()] == [new.id, old.id]
    add_exchange(store, old.id, "q", "a")
    listed = store.list_sessions()
    assert [(x.id, x.message_count) for x in listed] == [(old.id, 2), (new.id, 0)]
    assert [x.id for x in store.list_sessions(limit=1)] == [old.id]
    assert store.most_recent_id() == old.id


def test_most_recent_id_is_none_for_an_empty_store(store):
    assert store.most_recent_id() is None


def test_ids_resolve_from_a_unique_prefix_and_complain_otherwise(store):
    # Fixed ids, so the test means the same on every run: three share "a", seven share "b"
    # (more than the five an error message lists), the rest have a first digit of their own.
    a_ids = [f"a{n}" + "0" * 30 for n in range(1, 4)]
    b_ids = [f"b{n}" + "0" * 30 for n in range(1, 8)]
    own_ids = [c + "f" * 31 for c in "cdef0123"]
    ids = [store.create_session("m", session_id=i).id for i in a_ids + b_ids + own_ids]
    assert ids == a_ids + b_ids + own_ids
    assert all(store.resolve_id(i[:10]) == i for i in ids)
    assert all(store.resolve_id(i[0]) == i for i in own_ids)  # one digit is enough when unique
    assert store.resolve_id(b_ids[3].upper()) == b_ids[3]
    with pytest.raises(SessionLookupError) as caught:
        store.resolve_id("a")
    message = str(caught.value)
    assert "ambiguous" in message and "\n" not in message
    assert all(i[:12] in message for i in a_ids) and "more" not in message
    with pytest.raises(SessionLookupError) as caught:
        store.resolve_id("b")
    message = str(caught.value)
    assert sum(i[:12] in message for i in b_ids) == 5 and "and 2 more" in message
    with pytest.raises(SessionLookupError, match="no session id starts with 'zzz'"):
        store.resolve_id("zzz")
    with pytest.raises(SessionLookupError):
        store.resolve_id("  ")


def test_unknown_sessions_raise_lookup_errors(store):
    for call in (
        lambda: store.get_session("nope"),
        lambda: store.add_user_message("nope", "x"),
        lambda: store.rename_session("nope", "t"),
        lambda: store.delete_session("nope"),
        lambda: store.update_settings("nope", {}),
        lambda: store.begin_reply("nope", thinking_enabled=False, budget=None, sampling={}),
    ):
        with pytest.raises(SessionLookupError):
            call()


def test_the_conversation_for_the_engine_has_answers_not_reasoning(store):
    s = store.create_session("m", system_prompt="You are terse.")
    add_exchange(store, s.id, "Q1", "A1", thinking="secret reasoning")
    store.add_user_message(s.id, "Q2")
    add_reply(store, s.id, "", "only thought, no answer yet", outcome="cancelled")
    store.add_user_message(s.id, "Q3")
    assert store.conversation(s.id) == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
        {"role": "user", "content": "Q3"},
    ]


def test_update_settings_merges_and_system_prompt_can_change(store):
    s = store.create_session("m", settings={"thinking": True, "budget": 100})
    store.update_settings(s.id, {"budget": 200, "temperature": 0.5})
    store.set_system_prompt(s.id, "New prompt")
    loaded = store.get_session(s.id)
    assert loaded.settings == {"thinking": True, "budget": 200, "temperature": 0.5}
    assert loaded.system_prompt == "New prompt"


def test_deleting_a_session_removes_its_messages_and_search_entries(store):
    keep = store.create_session("m")
    gone = store.create_session("m")
    add_exchange(store, keep.id, "keep pelican", "fine")
    add_exchange(store, gone.id, "drop pelican", "gone")
    store.delete_session(gone.id)
    assert [x.id for x in store.list_sessions()] == [keep.id]
    assert (
        store._conn.execute(
            "SELECT count(*) FROM messages WHERE session_id = ?", (gone.id,)
        ).fetchone()[0]
        == 0
    )
    assert [h.session_id for h in store.search("pelican")] == [keep.id]


def test_everything_is_still_there_after_reopening(tmp_path):
    path = tmp_path / "sessions.db"
    with SessionStore.open(path) as store:
        s = store.create_session("m")
        add_exchange(store, s.id, "persist me", "persisted")
    with SessionStore.open(path) as store:
        assert [m.content for m in store.get_session(s.id).messages] == ["persist me", "persisted"]
        assert store.get_session(s.id).title == "persist me"
