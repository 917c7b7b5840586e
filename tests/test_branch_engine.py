"""Branches with the real engine: after switching branches, the next turn's reply is the one a
cold engine gives for that branch (the KV cache's prefix reuse never leaks the other branch)."""

from __future__ import annotations

import pytest

from qwen3tui.engine import ChatOptions, SamplingOverrides, Summary, load_engine
from qwen3tui.store import SessionSaver, SessionStore
from qwen3tui.turn import Recording, Stop, TurnEnded, run_turn

OPTIONS = ChatOptions(thinking=False, max_new_tokens=8, sampling=SamplingOverrides(temperature=0))


@pytest.fixture(scope="module")
def engine(tiny_checkpoint):
    return load_engine(str(tiny_checkpoint), device="cpu", dtype="float32", context_length=2048)


def turn(engine, saver: SessionSaver, session_id: str, text: str, at: int | None = None):
    """One turn as the UI runs it: the store's active branch plus the new message."""
    assert saver.wait_idle(10)
    messages = saver.store.conversation(session_id)
    if at is not None:  # an edit: the branch up to the edited message
        messages = messages[:at]
    messages = [*messages, {"role": "user", "content": text}]
    recording = Recording(saver, session_id, user_text=text, at=at)
    items = list(run_turn(engine, messages, OPTIONS, Stop(), recording))
    assert isinstance(items[-1], TurnEnded) and isinstance(items[-2], Summary)
    assert saver.wait_idle(10)
    return messages, items[-2]


def test_a_turn_after_a_branch_switch_matches_a_cold_engine_on_that_branch(engine, tmp_path):
    store = SessionStore.open(tmp_path / "sessions.db")
    saver = SessionSaver(store)
    try:
        engine.reset_cache()
        sid = saver.create_session("tiny", None, {})
        turn(engine, saver, sid, "Tell me about the sea. " * 4)
        sea = store.get_session(sid).messages[0].id
        turn(engine, saver, sid, "Tell me about the sky instead.", at=0)  # the cache: the sky
        store.switch_branch(sid, sea)
        assert store.get_session(sid).messages[0].content.startswith("Tell me about the sea")
        sent, warm = turn(engine, saver, sid, "And the fish?")
        saved = store.get_session(sid).messages
        assert [m.role for m in saved] == ["user", "assistant", "user", "assistant"]
        assert saved[0].id == sea and saved[3].content == warm.answer
        assert sent[0]["content"].startswith("Tell me about the sea")
        assert "sky" not in " ".join(m["content"] for m in sent)
        engine.reset_cache()
        cold = list(engine.chat(sent, OPTIONS))[-1]
        assert isinstance(cold, Summary)
        assert warm.token_ids == cold.token_ids and warm.answer == cold.answer
        assert warm.prefilled_tokens < warm.usage.prompt_tokens  # the shared start was reused
    finally:
        saver.close(timeout=5)
        store.close()
