"""The thinking budget against a server, enforced from the client as the local engine enforces
it (Qwen3 report section 4.3): the prompt rendered here, thinking streamed from the raw
completions endpoint with max_tokens = budget, the early-stop sentence appended when it ran out,
and the answer streamed by a second request."""

from __future__ import annotations

from remote_helpers import (
    Answer,
    chat_chunk,
    models_list,
    ndjson,
    recorded_engine,
    sse,
    text_chunk,
    usage_chunk,
)

from qwen3tui.engine.chat_template import ChatTemplate
from qwen3tui.engine.events import AnswerDelta, Summary, ThinkingDelta, ThinkingDone
from qwen3tui.engine.options import ChatOptions
from qwen3tui.remote.client_budget import BUDGET_STOP_TEXT

HI = [{"role": "user", "content": "hi"}]
MODELS = "/v1/models"
COMPLETIONS = "/v1/completions"
PROMPT = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n"  # built-in template
SENTENCE = BUDGET_STOP_TEXT[: BUDGET_STOP_TEXT.index("</think>")]


def budget_engine(*answers: Answer, **kwargs):
    return recorded_engine(
        {MODELS: Answer.json(models_list("Qwen3-8B")), COMPLETIONS: list(answers)}, **kwargs
    )


def run(engine, budget, **options):
    return list(engine.chat(HI, ChatOptions(thinking=True, thinking_budget=budget, **options)))


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


def test_the_budget_text_is_the_local_engines():
    from qwen3tui.engine.generate import BUDGET_STOP_TEXT as LOCAL

    assert BUDGET_STOP_TEXT == LOCAL


def test_budget_ran_out_the_sentence_closes_the_block_and_a_second_request_answers():
    thinking = Answer(
        body=sse(text_chunk("Hmm"), text_chunk(" ok"), text_chunk("", "length"), usage_chunk(9, 2))
    )
    answer = Answer(body=sse(text_chunk("\n\nAnswer"), text_chunk("", "stop"), usage_chunk(40, 1)))
    engine, seen = budget_engine(thinking, answer)
    events = run(engine, budget=2)

    first, second = seen.bodies(COMPLETIONS)
    assert first["prompt"] == PROMPT
    assert first["max_tokens"] == 2 and "</think>" in first["stop"]
    assert second["prompt"] == PROMPT + "Hmm ok" + BUDGET_STOP_TEXT  # placed, never sampled
    assert "max_tokens" not in second  # no user limit: the server's own

    assert "".join(e.text for e in of(events, ThinkingDelta)) == "Hmm ok" + SENTENCE
    (done,) = of(events, ThinkingDone)
    assert (done.budget_hit, done.thinking_tokens) == (True, 2)
    assert "".join(e.text for e in of(events, AnswerDelta)) == "Answer"
    s = events[-1]
    assert isinstance(s, Summary)
    assert (s.thinking_budget, s.thinking_budget_hit, s.finish_reason) == (2, True, "stop")
    assert s.thinking == "Hmm ok" + SENTENCE.rstrip()
    assert (s.usage.prompt_tokens, s.usage.thinking_tokens, s.usage.answer_tokens) == (9, 2, 1)


def test_the_model_closing_its_thinking_in_time_is_no_budget_hit():
    # vLLM leaves the stop string out of the text and names it in stop_reason.
    thinking = Answer(
        body=sse(
            text_chunk("Short."), text_chunk("", "stop", stop_reason="</think>"), usage_chunk(9, 3)
        )
    )
    answer = Answer(body=sse(text_chunk("\n\nDone"), text_chunk("", "stop"), usage_chunk(20, 1)))
    engine, seen = budget_engine(thinking, answer)
    events = run(engine, budget=100)
    assert seen.bodies(COMPLETIONS)[1]["prompt"] == PROMPT + "Short.</think>"
    (done,) = of(events, ThinkingDone)
    assert (done.budget_hit, done.thinking_tokens) == (False, 2)  # the `</think>` is not thought
    s = events[-1]
    assert (s.thinking, s.answer, s.thinking_budget_hit) == ("Short.", "Done", False)


def test_a_server_that_keeps_the_stop_string_in_the_text_is_not_closed_twice():
    # transformers serve streams the `</think>` it stopped on.
    thinking = Answer(
        body=sse(text_chunk("Short."), text_chunk("</think>"), text_chunk("", "stop"))
    )
    answer = Answer(body=sse(text_chunk("\n\nDone"), text_chunk("", "stop")))
    engine, seen = budget_engine(thinking, answer)
    events = run(engine, budget=100)
    assert seen.bodies(COMPLETIONS)[1]["prompt"] == PROMPT + "Short.</think>"
    assert len(of(events, ThinkingDone)) == 1
    assert (events[-1].thinking, events[-1].answer) == ("Short.", "Done")


def test_a_model_that_ends_its_turn_inside_the_thinking_gets_no_second_request():
    thinking = Answer(body=sse(text_chunk("Bye"), text_chunk("", "stop", stop_reason=None)))
    engine, seen = budget_engine(thinking)
    events = run(engine, budget=100)
    assert len(seen.bodies(COMPLETIONS)) == 1
    assert (events[-1].finish_reason, events[-1].answer) == ("stop", "")


def test_a_budget_of_zero_means_no_thinking_at_all():
    answer = Answer(body=sse(text_chunk("\n\nQuick."), text_chunk("", "stop")))
    engine, seen = budget_engine(answer)
    events = run(engine, budget=0)
    (only,) = seen.bodies(COMPLETIONS)
    assert only["prompt"] == PROMPT + BUDGET_STOP_TEXT
    s = events[-1]
    assert (s.thinking_budget_hit, s.usage.thinking_tokens, s.answer) == (True, 0, "Quick.")
    assert s.thinking == SENTENCE.strip()


def test_max_new_tokens_bounds_thinking_and_answer_together():
    thinking = Answer(
        body=sse(text_chunk("a"), text_chunk("b"), text_chunk("", "length"), usage_chunk(9, 3))
    )
    answer = Answer(body=sse(text_chunk("A"), text_chunk("", "length"), usage_chunk(9, 2)))
    engine, seen = budget_engine(thinking, answer)
    events = run(engine, budget=3, max_new_tokens=5)
    first, second = seen.bodies(COMPLETIONS)
    assert (first["max_tokens"], second["max_tokens"]) == (3, 2)
    assert events[-1].finish_reason == "length"


def test_max_new_tokens_below_the_budget_ends_the_reply_in_the_thinking():
    thinking = Answer(body=sse(text_chunk("a"), text_chunk("", "length"), usage_chunk(9, 4)))
    engine, seen = budget_engine(thinking)
    events = run(engine, budget=10, max_new_tokens=4)
    assert seen.bodies(COMPLETIONS)[0]["max_tokens"] == 4
    assert len(seen.bodies(COMPLETIONS)) == 1
    assert (events[-1].finish_reason, events[-1].thinking_budget_hit) == ("length", False)


def test_the_prompt_is_the_models_own_template_as_the_local_engine_renders_it(shared_dir):
    thinking = Answer(body=sse(text_chunk("x"), text_chunk("", "length")))
    answer = Answer(body=sse(text_chunk("y"), text_chunk("", "stop")))
    engine, seen = budget_engine(thinking, answer, tokenizer_dir=str(shared_dir))
    messages = [{"role": "system", "content": "Be brief."}, *HI]
    list(engine.chat(messages, ChatOptions(thinking=True, thinking_budget=1)))
    template = ChatTemplate.from_dir(shared_dir)
    expected = template.render(messages, add_generation_prompt=True, enable_thinking=True)
    assert seen.bodies(COMPLETIONS)[0]["prompt"] == expected + "<think>\n"
    # With the tokenizer at hand, counts are exact rather than estimated.
    tokenizer = engine.local_prompt().tokenizer
    assert engine.count_tokens(messages, True) == len(tokenizer.encode(expected + "<think>\n"))


def test_ollama_gets_the_budget_through_raw_generate():
    thinking = ndjson(
        {"model": "qwen3:8b", "response": "Hmm", "done": False},
        {
            "model": "qwen3:8b",
            "response": "",
            "done": True,
            "done_reason": "length",
            "eval_count": 1,
        },
    )
    answer = ndjson(
        {"model": "qwen3:8b", "response": "\n\nHi", "done": False},
        {"model": "qwen3:8b", "response": "", "done": True, "done_reason": "stop", "eval_count": 1},
    )
    engine, seen = recorded_engine(
        {
            MODELS: Answer.json(models_list("qwen3:8b", owned_by="library")),
            "/api/generate": [Answer(body=thinking), Answer(body=answer)],
        },
        base_url="http://localhost:11434",
    )
    events = run(engine, budget=1)
    first, second = seen.bodies("/api/generate")
    assert first["raw"] is True and first["prompt"] == PROMPT
    assert first["options"]["num_predict"] == 1 and "</think>" in first["options"]["stop"]
    assert second["prompt"] == PROMPT + "Hmm" + BUDGET_STOP_TEXT
    assert (events[-1].thinking_budget_hit, events[-1].answer) == (True, "Hi")


def test_a_server_without_raw_completions_says_the_budget_needs_them():
    import pytest

    from qwen3tui.remote import RequestRejectedError

    engine, _ = recorded_engine(
        {
            MODELS: Answer.json(models_list("m")),
            COMPLETIONS: Answer.json({"detail": "Not Found"}, 404),
        }
    )
    with pytest.raises(RequestRejectedError) as err:
        run(engine, budget=5)
    assert "/v1/completions" in str(err.value) and "budget" in str(err.value)


def test_a_server_that_ignores_the_stop_and_answers_within_the_budget_is_not_asked_again():
    thinking = Answer(
        body=sse(
            text_chunk("Hm."),
            text_chunk("</think>"),
            text_chunk("\n\nFine."),
            text_chunk("", "stop"),
        )
    )
    engine, seen = budget_engine(thinking)
    events = run(engine, budget=100)
    assert len(seen.bodies(COMPLETIONS)) == 1
    s = events[-1]
    assert (s.thinking, s.answer, s.finish_reason, s.thinking_budget_hit) == (
        "Hm.",
        "Fine.",
        "stop",
        False,
    )


def test_a_server_that_ignores_the_stop_and_runs_out_lets_the_answer_go_on():
    thinking = Answer(
        body=sse(
            text_chunk("Hm."),
            text_chunk("</think>"),
            text_chunk("\n\nThe an"),
            text_chunk("", "length"),
        )
    )
    rest = Answer(body=sse(text_chunk("swer."), text_chunk("", "stop")))
    engine, seen = budget_engine(thinking, rest)
    events = run(engine, budget=4)
    assert seen.bodies(COMPLETIONS)[1]["prompt"] == PROMPT + "Hm.</think>\n\nThe an"
    s = events[-1]
    assert (s.thinking, s.answer, s.thinking_budget_hit) == ("Hm.", "The answer.", False)


def test_on_llama_cpp_without_tokenizer_files_the_gguf_template_from_props_is_used():
    template = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% if not enable_thinking %}"
        "<think>\n\n</think>\n\n{% endif %}{% endif %}{{ eos_token }}"
    )
    thinking = Answer(body=sse(text_chunk("x"), text_chunk("", "length")))
    answer = Answer(body=sse(text_chunk("y"), text_chunk("", "stop")))
    engine, seen = recorded_engine(
        {
            MODELS: Answer.json(models_list("qwen3-32b-q4_k_m.gguf", owned_by="llamacpp")),
            "/props": Answer.json({"chat_template": template, "eos_token": "<|im_end|>"}),
            COMPLETIONS: [thinking, answer],
        }
    )
    run(engine, budget=1)
    expected = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<|im_end|><think>\n"
    assert seen.bodies(COMPLETIONS)[0]["prompt"] == expected
    assert engine.local_prompt().source == "http://gpu-box:8000/props"


def _tokenizer_dir_with_template(tmp_path, shared_dir, generation_prompt: str):
    import json
    import shutil

    config = json.loads((shared_dir / "tokenizer_config.json").read_text())
    config["chat_template"] = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}" + generation_prompt + "{% endif %}"
    )
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    shutil.copyfile(shared_dir / "tokenizer.json", tmp_path / "tokenizer.json")
    return str(tmp_path)


def test_a_thinking_only_model_thinks_even_when_asked_not_to_and_is_not_opened_twice(
    tmp_path, shared_dir
):
    folder = _tokenizer_dir_with_template(tmp_path, shared_dir, "<|im_start|>assistant\n<think>\n")
    thinking = Answer(body=sse(text_chunk("x"), text_chunk("", "length")))
    answer = Answer(body=sse(text_chunk("y"), text_chunk("", "stop")))
    engine, seen = budget_engine(thinking, answer, tokenizer_dir=folder)
    assert engine.info.thinking_mode == "thinking"
    events = list(engine.chat(HI, ChatOptions(thinking=False, thinking_budget=1)))
    assert seen.bodies(COMPLETIONS)[0]["prompt"] == PROMPT  # one <think>, from the template
    assert events[-1].thinking_enabled and events[-1].thinking_budget_hit


def test_an_instruct_only_model_never_thinks_and_takes_no_budget(tmp_path, shared_dir):
    folder = _tokenizer_dir_with_template(tmp_path, shared_dir, "<|im_start|>assistant\n")
    chat = Answer(body=sse(chat_chunk({"content": "Hi."}, "stop")))
    engine, seen = recorded_engine(
        {MODELS: Answer.json(models_list("Qwen3-4B-Instruct-2507")), "/v1/chat/completions": chat},
        tokenizer_dir=folder,
    )
    assert engine.info.thinking_mode == "instruct"
    events = list(engine.chat(HI, ChatOptions(thinking=True, thinking_budget=5)))
    (sent,) = seen.bodies("/v1/chat/completions")
    assert sent["chat_template_kwargs"] == {"enable_thinking": False}
    assert not seen.bodies(COMPLETIONS)
    assert (events[-1].answer, events[-1].thinking_enabled) == ("Hi.", False)


def test_with_the_tokenizer_at_hand_old_turns_are_dropped_to_fit_the_servers_context(shared_dir):
    from qwen3tui.engine.events import ContextNotice

    chat = Answer(body=sse(chat_chunk({"content": "ok"}, "stop")))
    listing = Answer.json(models_list("Qwen3-8B", max_model_len=120))
    long = "word " * 40
    history = [
        {"role": "user", "content": long},
        {"role": "assistant", "content": long},
        {"role": "user", "content": "and now?"},
    ]
    engine, seen = recorded_engine(
        {MODELS: listing, "/v1/chat/completions": chat}, tokenizer_dir=str(shared_dir)
    )
    events = list(engine.chat(history, ChatOptions(thinking=False, max_new_tokens=16)))
    (notice,) = [e for e in events if isinstance(e, ContextNotice)]
    assert notice.dropped_messages == 2
    assert seen.bodies("/v1/chat/completions")[0]["messages"] == history[-1:]

    # Without the tokenizer nothing is guessed away: the server's own check stands.
    engine, seen = recorded_engine({MODELS: listing, "/v1/chat/completions": chat})
    events = list(engine.chat(history, ChatOptions(thinking=False, max_new_tokens=16)))
    assert not [e for e in events if isinstance(e, ContextNotice)]
    assert seen.bodies("/v1/chat/completions")[0]["messages"] == history
