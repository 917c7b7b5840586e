""" "Answer now" against a server, on the client-side budget path: the thinking request is
closed where it is, and the answer is asked for with the early-stop sentence placed after the
thinking seen so far, as the local engine does."""

from __future__ import annotations

import threading

from remote_helpers import Answer, models_list, recorded_engine, sse, text_chunk, usage_chunk

from qwen3tui.engine.events import AnswerDelta, Summary, ThinkingDelta, ThinkingDone
from qwen3tui.engine.options import ChatOptions
from qwen3tui.remote.client_budget import BUDGET_STOP_TEXT

HI = [{"role": "user", "content": "hi"}]
MODELS = "/v1/models"
COMPLETIONS = "/v1/completions"
PROMPT = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n"  # built-in template
SENTENCE = BUDGET_STOP_TEXT[: BUDGET_STOP_TEXT.index("</think>")]


def test_answer_now_closes_the_thinking_request_and_asks_for_the_answer_after_the_sentence():
    thinking = Answer(
        body=sse(
            text_chunk("Hmm"),
            text_chunk(" and"),
            text_chunk(" more"),
            text_chunk("", "length"),
            usage_chunk(9, 3),
        )
    )
    answer = Answer(body=sse(text_chunk("\n\nAnswer"), text_chunk("", "stop"), usage_chunk(40, 1)))
    engine, seen = recorded_engine(
        {MODELS: Answer.json(models_list("Qwen3-8B")), COMPLETIONS: [thinking, answer]}
    )
    answer_now = threading.Event()
    events = []
    for event in engine.chat(
        HI, ChatOptions(thinking=True, thinking_budget=1000), answer_now=answer_now
    ):
        events.append(event)
        if isinstance(event, ThinkingDelta):
            answer_now.set()  # the user asks at the first thinking text

    _, second = seen.bodies(COMPLETIONS)
    thought = "".join(e.text for e in events if isinstance(e, ThinkingDelta))
    seen_before = thought.removesuffix(SENTENCE)
    assert seen_before in ("Hmm", "Hmm and")  # where the stream was when it was closed
    assert second["prompt"] == PROMPT + seen_before + BUDGET_STOP_TEXT  # placed, never sampled
    (done,) = [e for e in events if isinstance(e, ThinkingDone)]
    assert done.cut_by_user and not done.budget_hit
    assert "".join(e.text for e in events if isinstance(e, AnswerDelta)) == "Answer"
    summary = events[-1]
    assert isinstance(summary, Summary) and summary.finish_reason == "stop"
    assert summary.thinking_cut_by_user and not summary.thinking_budget_hit


def test_without_answer_now_the_budget_path_is_unchanged():
    thinking = Answer(
        body=sse(text_chunk("Hmm"), text_chunk(" ok"), text_chunk("", "length"), usage_chunk(9, 2))
    )
    answer = Answer(body=sse(text_chunk("\n\nAnswer"), text_chunk("", "stop"), usage_chunk(40, 1)))
    engine, seen = recorded_engine(
        {MODELS: Answer.json(models_list("Qwen3-8B")), COMPLETIONS: [thinking, answer]}
    )
    events = list(
        engine.chat(HI, ChatOptions(thinking=True, thinking_budget=2), answer_now=threading.Event())
    )
    _, second = seen.bodies(COMPLETIONS)
    assert second["prompt"] == PROMPT + "Hmm ok" + BUDGET_STOP_TEXT
    summary = events[-1]
    assert summary.thinking_budget_hit and not summary.thinking_cut_by_user
