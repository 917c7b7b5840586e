"""Full-text search: titles, user messages and answers; thinking only when asked."""

from __future__ import annotations

import pytest
from store_helpers import add_reply

from qwen3tui.store import SessionStore, StoreError


@pytest.fixture
def store(tmp_path):
    s = SessionStore.open(tmp_path / "sessions.db")
    yield s
    s.close()


def exchange(store, question, answer, thinking="", title=None):
    s = store.create_session("m")
    store.add_user_message(s.id, question)
    add_reply(store, s.id, answer, thinking, thinking_enabled=True)
    if title:
        store.rename_session(s.id, title)
    return s.id


def test_answers_user_messages_and_titles_are_found_with_a_marked_snippet(store):
    a = exchange(store, "How do volcanoes form?", "Magma rises through the crust.")
    b = exchange(store, "Tell me a story", "Once upon a time.", title="Bedtime dragons")
    (hit,) = store.search("magma")
    assert (hit.session_id, hit.kind, hit.message_order) == (a, "answer", 1)
    assert "[Magma]" in hit.snippet and hit.title == "How do volcanoes form?"
    (hit,) = store.search("volcanoes")
    assert hit.session_id == a and hit.kind in ("user", "title")
    (hit,) = store.search("dragons")
    assert (hit.session_id, hit.kind, hit.message_order) == (b, "title", None)


def test_thinking_is_searched_only_when_asked(store):
    a = exchange(store, "question", "plain answer", thinking="the hidden zeppelin idea")
    assert store.search("zeppelin") == []
    (hit,) = store.search("zeppelin", include_thinking=True)
    assert (hit.session_id, hit.kind) == (a, "thinking")
    assert "[zeppelin]" in hit.snippet


def test_each_session_appears_once_and_all_words_must_match(store):
    a = exchange(store, "apples and pears", "apples are red, pears are green")
    exchange(store, "only apples here", "nothing else")
    assert sorted(h.session_id for h in store.search("apples")) == sorted(
        s.id for s in store.list_sessions()
    )
    assert [h.session_id for h in store.search("apples pears")] == [a]


def test_words_match_by_stem_and_by_prefix_with_a_star(store):
    a = exchange(store, "q", "We were running quantization experiments")
    assert [h.session_id for h in store.search("run")] == [a]
    assert [h.session_id for h in store.search("quant*")] == [a]


def test_punctuation_and_fts_syntax_in_a_query_are_taken_literally(store):
    a = exchange(store, "q", "Use C++ and NOT python (really)")
    for query in ["C++", '"unbalanced', "NOT", "python)", "a OR", "col:value", "( )", "-"]:
        store.search(query)  # never an FTS5 syntax error
    assert [h.session_id for h in store.search("(really")] == [a]
    for nothing in ("   ", "*"):
        with pytest.raises(StoreError):
            store.search(nothing)


def test_a_reply_is_searchable_once_written_and_gone_after_edits(store):
    s = store.create_session("m")
    add_reply(store, s.id, "partial mention of gondolas", outcome="cancelled")
    assert [h.session_id for h in store.search("gondolas")] == [s.id]
    store.delete_messages_from(s.id, 0)
    assert store.search("gondolas") == []
