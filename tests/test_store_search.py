"""Full-text search: titles, user messages and answers; thinking only when asked."""

from __future__ import annotations

import pytest
from store_helpers import add_reply

from qwen3tui.store import Outcome, SessionStore, StoreError


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
    assert [h.session_id for h in store.search("runs")] == [a]  # the same stem
    assert [h.session_id for h in store.search("quant*")] == [a]


def test_every_word_matches_the_words_it_begins_as_it_is_typed(store):
    a = exchange(store, "q", "We were running quantization experiments")
    b = exchange(store, "q", "Quantum computers and qubits")
    # Each step of typing "quantization", including those past its stem "quantiz".
    for typed in ("quanti", "quantiz", "quantiza", "quantizatio", "quantization"):
        assert [h.session_id for h in store.search(typed)] == [a], typed
    assert sorted(h.session_id for h in store.search("quant")) == sorted([a, b])
    assert [h.session_id for h in store.search("qub")] == [b]
    assert [h.session_id for h in store.search("exper quantiza")] == [a]
    # A word must begin a word of the text, not sit inside one.
    assert store.search("uantization") == []
    assert [h.session_id for h in store.search("quantum")] == [b]
    assert store.search("quantiza computers") == []  # all words, in one message


def test_prefixes_ignore_case_and_diacritics(store):
    a = exchange(store, "q", "Un café à Zürich")
    assert [h.session_id for h in store.search("CAF")] == [a]
    assert [h.session_id for h in store.search("zur")] == [a]
    assert [h.session_id for h in store.search("züri")] == [a]


def test_punctuation_and_fts_syntax_in_a_query_are_taken_literally(store):
    a = exchange(store, "q", "Use C++ and NOT python (really) near the end")
    hostile = ['"', '""', "*", "AND", "OR", "NOT", "NEAR(", "NEAR(a b)", '"unbalanced', "C++",
               "python)", "a OR", "col:value", "body:", "^x", "{kind}: x", "x + y", "( )", "-",
               "'", "\\", "%", "_"]  # fmt: skip
    for query in hostile:
        try:
            store.search(query)  # never an FTS5 syntax error
        except StoreError as err:
            assert str(err) == "search needs at least one word", query
    assert [h.session_id for h in store.search("(really")] == [a]
    assert [h.session_id for h in store.search("AND")] == [a]  # the word, not the operator
    assert [h.session_id for h in store.search("NEAR(")] == [a]
    assert [h.session_id for h in store.search('"pyth')] == [a]
    for nothing in ("   ", "*", '"', "( )", "-", "(*"):
        with pytest.raises(StoreError, match="search needs at least one word"):
            store.search(nothing)


def test_a_reply_is_searchable_once_written_and_gone_after_edits(store):
    s = store.create_session("m")
    reply = add_reply(store, s.id, "partial mention of gondolas", outcome="cancelled")
    assert [h.session_id for h in store.search("gondolas")] == [s.id]
    store.finish_reply(reply, thinking="", answer="all about canals", outcome=Outcome.COMPLETE)
    assert store.search("gondolas") == []
    assert [h.session_id for h in store.search("canals")] == [s.id]
