""" "Answer now": the user ends the model's thinking early, the budget's way (section 4.3): the
early-stop sentence and `</think>` are prefilled, the model answers, and the reply says so."""

from __future__ import annotations

import threading

import pytest
import torch
from fake_engine import FakeEngine
from scripted_model import ScriptedModel

from qwen3tui.engine import load_engine
from qwen3tui.engine.config import Qwen3Config
from qwen3tui.engine.events import AnswerDelta, Summary, ThinkingDelta, ThinkingDone
from qwen3tui.engine.generate import BUDGET_STOP_TEXT, Request, generate
from qwen3tui.engine.kv_cache import KVCache
from qwen3tui.engine.options import ChatOptions, SamplingParams
from qwen3tui.engine.random_checkpoint import TINY_CONFIG
from qwen3tui.engine.tokenizer import Qwen3Tokenizer
from qwen3tui.store import Outcome, SessionSaver, SessionStore
from qwen3tui.turn import Recording, Stop, TurnEnded, run_turn

GREEDY = SamplingParams(temperature=0.0)


@pytest.fixture(scope="module")
def tok(shared_dir) -> Qwen3Tokenizer:
    return Qwen3Tokenizer.from_dir(shared_dir)


def test_answer_now_closes_the_thinking_at_the_next_step_with_the_budget_sentence(tok):
    endless = tok.encode(" hmm" * 30)
    answer = tok.encode("Done.")
    stop_ids = tok.encode(BUDGET_STOP_TEXT)
    # The model would think forever; once the stop text is in, it answers.
    script = endless[:3] + answer + [tok.im_end_id]
    config = Qwen3Config.from_dict({**TINY_CONFIG, "num_hidden_layers": 1})
    cache = KVCache(config, 4096, torch.device("cpu"), torch.float32)
    model = ScriptedModel(script, tok.vocab_size)
    prompt = tok.encode("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n")
    answer_now = threading.Event()
    events = []
    for event in generate(
        model, cache, tok, Request(prompt, True, None, 200, GREEDY), answer_now=answer_now
    ):
        events.append(event)
        if sum(isinstance(e, ThinkingDelta) for e in events) == 3:
            answer_now.set()  # the user pressed the key after three thinking tokens
    summary = events[-1]
    assert isinstance(summary, Summary)
    assert summary.usage.thinking_tokens == 3
    assert summary.token_ids == endless[:3] + stop_ids + answer + [tok.im_end_id]
    assert summary.thinking_cut_by_user and not summary.thinking_budget_hit
    assert summary.answer == "Done."
    assert summary.thinking.endswith("give the solution based on the thinking directly now.")
    assert model.fed[4] == stop_ids  # prefilled, never sampled
    done = [e for e in events if isinstance(e, ThinkingDone)]
    assert len(done) == 1 and done[0].cut_by_user and not done[0].budget_hit


def test_answer_now_after_the_thinking_changes_nothing(tok):
    thought, answer = tok.encode("ok"), tok.encode("Fine.")
    script = thought + [tok.think_end_id] + answer + [tok.im_end_id]
    config = Qwen3Config.from_dict({**TINY_CONFIG, "num_hidden_layers": 1})
    cache = KVCache(config, 4096, torch.device("cpu"), torch.float32)
    model = ScriptedModel(script, tok.vocab_size)
    prompt = tok.encode("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n")
    answer_now = threading.Event()
    events = []
    for event in generate(
        model, cache, tok, Request(prompt, True, None, 200, GREEDY), answer_now=answer_now
    ):
        events.append(event)
        if isinstance(event, AnswerDelta):
            answer_now.set()
    summary = events[-1]
    assert summary.token_ids == script
    assert not summary.thinking_cut_by_user


def test_the_loaded_engine_answers_at_once_when_asked_before_it_thinks(tiny_checkpoint):
    engine = load_engine(str(tiny_checkpoint), device="cpu", dtype="float32", context_length=2048)
    answer_now = threading.Event()
    answer_now.set()
    options = ChatOptions(thinking=True, thinking_budget=None, max_new_tokens=4)
    events = list(engine.chat([{"role": "user", "content": "hi"}], options, answer_now=answer_now))
    summary = events[-1]
    assert isinstance(summary, Summary) and summary.thinking_cut_by_user
    assert summary.usage.thinking_tokens == 0
    stop_ids = engine.tokenizer.encode(BUDGET_STOP_TEXT)
    assert summary.token_ids[: len(stop_ids)] == stop_ids
    assert summary.usage.answer_tokens == 4  # then the model answered


def test_the_saved_reply_records_that_the_user_cut_the_thinking_short(tmp_path):
    store = SessionStore.open(tmp_path / "sessions.db")
    saver = SessionSaver(store)
    try:
        session_id = saver.create_session("fake", None, {})
        engine = FakeEngine(hold_after=2)
        stop = Stop()
        items = []
        turn = run_turn(
            engine,
            [{"role": "user", "content": "hi"}],
            ChatOptions(),
            stop,
            Recording(saver, session_id, user_text="hi"),
        )
        for item in turn:
            items.append(item)
            if sum(isinstance(i, ThinkingDelta) for i in items) == 2:
                stop.answer_now()
                engine.release.set()
        ended = items[-1]
        assert isinstance(ended, TurnEnded) and ended.outcome is Outcome.COMPLETE
        assert ended.thinking == "Let me" and ended.answer == "**Hello** from the fake engine."
        assert saver.wait_idle(10)
        reply = store.get_session(session_id).messages[-1]
        assert reply.usage["thinking_cut_by_user"] is True
        assert reply.status == "complete"
    finally:
        saver.close(timeout=5)
        store.close()
