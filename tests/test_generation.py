"""The generation loop: thinking/answer split by token id, budget, stopping, cancelling.

A scripted model stands in where exact token sequences matter: it answers each forward call
with a one-hot logit row for the next scripted token, and records what it was fed.
"""

from __future__ import annotations

import threading

import pytest
import torch
from scripted_model import ScriptedModel

from qwen3tui.engine.config import Qwen3Config
from qwen3tui.engine.events import AnswerDelta, Summary, ThinkingDelta, ThinkingDone
from qwen3tui.engine.generate import BUDGET_STOP_TEXT, Request, generate
from qwen3tui.engine.kv_cache import KVCache
from qwen3tui.engine.options import SamplingParams
from qwen3tui.engine.random_checkpoint import TINY_CONFIG
from qwen3tui.engine.tokenizer import Qwen3Tokenizer

GREEDY = SamplingParams(temperature=0.0)


@pytest.fixture(scope="module")
def tok(shared_dir) -> Qwen3Tokenizer:
    return Qwen3Tokenizer.from_dir(shared_dir)


def run(tok, script, *, thinking=True, budget=None, max_new=200, cancel=None):
    config = Qwen3Config.from_dict({**TINY_CONFIG, "num_hidden_layers": 1})
    cache = KVCache(config, 4096, torch.device("cpu"), torch.float32)
    model = ScriptedModel(script, tok.vocab_size)
    prompt = tok.encode("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n")
    request = Request(prompt, thinking, budget, max_new, GREEDY)
    events = list(generate(model, cache, tok, request, cancel))
    return events, model


def text_of(events, kind) -> str:
    return "".join(e.text for e in events if isinstance(e, kind))


def test_thinking_and_answer_are_split_exactly_at_the_think_tokens(tok):
    thought, answer = tok.encode("Let me think. 2+2 is 4"), tok.encode("\n\nThe answer is **4**.")
    events, _ = run(tok, thought + [tok.think_end_id] + answer + [tok.im_end_id])
    summary = events[-1]
    assert isinstance(summary, Summary) and summary.finish_reason == "stop"
    assert text_of(events, ThinkingDelta) == "Let me think. 2+2 is 4"
    assert text_of(events, AnswerDelta) == "The answer is **4**."
    done = [e for e in events if isinstance(e, ThinkingDone)]
    assert len(done) == 1 and done[0].thinking_tokens == len(thought) and not done[0].budget_hit
    # Every thinking event comes before the block closes, every answer event after it.
    kinds = [type(e) for e in events]
    assert max(i for i, k in enumerate(kinds) if k is ThinkingDelta) < kinds.index(ThinkingDone)
    assert min(i for i, k in enumerate(kinds) if k is AnswerDelta) > kinds.index(ThinkingDone)
    assert summary.usage.thinking_tokens == len(thought)
    assert summary.usage.answer_tokens == len(answer)
    assert summary.token_ids == thought + [tok.think_end_id] + answer + [tok.im_end_id]
    assert summary.thinking == "Let me think. 2+2 is 4" and summary.answer == "The answer is **4**."


def test_non_thinking_turn_has_only_answer_events(tok):
    answer = tok.encode("Plain answer.")
    events, _ = run(tok, answer + [tok.im_end_id], thinking=False)
    assert not any(isinstance(e, (ThinkingDelta, ThinkingDone)) for e in events)
    assert text_of(events, AnswerDelta) == "Plain answer."
    assert events[-1].usage.thinking_tokens == 0


def test_budget_stops_thinking_at_n_tokens_and_prefills_the_stop_text(tok):
    endless = tok.encode(" step") * 100
    answer = tok.encode("Final.")
    budget = 10
    # The model would think forever; after the budget text it answers.
    script = endless[:budget] + answer + [tok.im_end_id]
    events, model = run(tok, script, budget=budget)
    summary = events[-1]
    stop_ids = tok.encode(BUDGET_STOP_TEXT)
    assert summary.usage.thinking_tokens == budget
    assert summary.thinking_budget_hit
    assert summary.token_ids == endless[:budget] + stop_ids + answer + [tok.im_end_id]
    # The stop text went in as one prefill chunk right after the last thinking token.
    assert model.fed[budget] == endless[budget - 1 : budget]
    assert model.fed[budget + 1] == stop_ids
    assert "Considering the limited time by the user" in summary.thinking
    assert text_of(events, AnswerDelta) == "Final."
    done = [e for e in events if isinstance(e, ThinkingDone)]
    assert done[0].budget_hit and done[0].thinking_tokens == budget


@pytest.mark.parametrize("budget", [0, 1, 7])
def test_model_thinking_tokens_never_exceed_the_budget(tok, budget):
    endless = tok.encode(" hmm") * 50
    events, _ = run(tok, endless, budget=budget, max_new=30)
    summary = events[-1]
    assert summary.usage.thinking_tokens == budget
    assert (
        max((e.thinking_tokens for e in events if isinstance(e, ThinkingDelta)), default=0)
        <= budget
    )
    assert any(isinstance(e, AnswerDelta) for e in events), "after the budget the model answers"


def test_model_closing_its_thinking_early_does_not_trigger_the_budget(tok):
    script = tok.encode("short") + [tok.think_end_id] + tok.encode("ok") + [tok.im_end_id]
    events, _ = run(tok, script, budget=100)
    assert not events[-1].thinking_budget_hit
    assert tok.encode(BUDGET_STOP_TEXT)[2] not in events[-1].token_ids


def test_reply_stops_at_end_of_turn_even_while_thinking(tok):
    events, _ = run(tok, tok.encode("never closed") + [tok.im_end_id] + tok.encode("ignored"))
    assert events[-1].finish_reason == "stop"
    assert "ignored" not in events[-1].thinking + events[-1].answer


def test_max_new_tokens_ends_with_length(tok):
    events, _ = run(tok, tok.encode("a b c d e f g h"), thinking=False, max_new=3)
    assert events[-1].finish_reason == "length"
    assert len(events[-1].token_ids) == 3


def test_streamed_text_never_splits_a_multibyte_character(tok):
    text = "Emoji 👩‍👩‍👧 and 中文 and café"
    events, _ = run(tok, tok.encode(text) + [tok.im_end_id], thinking=False)
    chunks = [e.text for e in events if isinstance(e, AnswerDelta)]
    assert "".join(chunks) == text
    assert all("\ufffd" not in c for c in chunks)


def test_cancel_from_another_thread_stops_within_one_step_and_keeps_the_text(tok):
    cancel = threading.Event()
    script = tok.encode(" token") * 500
    config = Qwen3Config.from_dict({**TINY_CONFIG, "num_hidden_layers": 1})
    cache = KVCache(config, 4096, torch.device("cpu"), torch.float32)
    model = ScriptedModel(script, tok.vocab_size)
    prompt = tok.encode("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    gen = generate(model, cache, tok, Request(prompt, False, None, 1000, GREEDY), cancel)
    received = []
    for event in gen:
        received.append(event)
        if len(received) == 5:
            setter = threading.Thread(target=cancel.set)
            setter.start()
            setter.join()
            seen_tokens = len(model.fed)  # prefill + one per sampled token so far
        if isinstance(event, Summary):
            break
    summary = received[-1]
    assert summary.finish_reason == "cancelled"
    assert len(model.fed) <= seen_tokens + 1
    assert summary.answer == text_of(received, AnswerDelta) and summary.answer.startswith(
        " token token"
    )
