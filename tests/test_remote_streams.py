"""The remote engine on recorded streams in each server's format (written from the servers'
documentation): the thinking/answer split, usage, finish reasons and in-stream errors."""

from __future__ import annotations

import pytest
from remote_helpers import (
    Answer,
    chat_chunk,
    models_list,
    ndjson,
    recorded_engine,
    sse,
    usage_chunk,
)

from qwen3tui.engine import ChatEngine
from qwen3tui.engine.events import AnswerDelta, Summary, ThinkingDelta, ThinkingDone
from qwen3tui.engine.options import ChatOptions
from qwen3tui.remote import MalformedStreamError, ServerStreamError, StreamInterruptedError

HI = [{"role": "user", "content": "hi"}]
MODELS = "/v1/models"
CHAT = "/v1/chat/completions"


def run(engine, options=None, messages=HI):
    return list(engine.chat(messages, options or ChatOptions()))


def texts(events, kind):
    return "".join(e.text for e in events if isinstance(e, kind))


def summary_of(events) -> Summary:
    assert isinstance(events[-1], Summary)
    assert sum(isinstance(e, Summary) for e in events) == 1
    return events[-1]


def reasoning_stream(field: str, **final: object) -> bytes:
    """A Qwen3 reply as servers with a reasoning parser stream it, reasoning in `field`."""
    return sse(
        chat_chunk({"role": "assistant", "content": ""}),
        chat_chunk({field: "\n"}),
        chat_chunk({field: "The user"}),
        chat_chunk({field: " says hi."}),
        chat_chunk({field: "\n"}),
        chat_chunk({"content": "\n\n"}),
        chat_chunk({"content": "Hello"}),
        chat_chunk({"content": "!"}, finish="stop", **final),
        usage_chunk(prompt=12, completion=9),
    )


@pytest.mark.parametrize(
    ("server", "field", "owned_by"),
    [
        ("vllm", "reasoning", "vllm"),  # current vLLM, --reasoning-parser qwen3
        ("vllm (before 0.11)", "reasoning_content", "vllm"),
        ("sglang", "reasoning_content", "sglang"),
        ("tensorrt-llm", "reasoning_content", "tensorrt_llm"),
        ("llama.cpp", "reasoning_content", "llamacpp"),
        ("ollama's OpenAI API (a proxy in front)", "reasoning", "user"),
    ],
)
def test_reasoning_fields_of_every_server_become_the_thinking(server, field, owned_by):
    engine, _ = recorded_engine(
        {
            MODELS: Answer.json(models_list("Qwen3-8B", owned_by=owned_by)),
            CHAT: Answer(body=reasoning_stream(field)),
        }
    )
    events = run(engine)
    assert texts(events, ThinkingDelta) == "The user says hi.\n"
    assert texts(events, AnswerDelta) == "Hello!"
    done = [e for e in events if isinstance(e, ThinkingDone)]
    assert len(done) == 1 and not done[0].budget_hit
    # Thinking ends before the answer starts, as with the local engine.
    assert events.index(done[0]) < next(
        i for i, e in enumerate(events) if isinstance(e, AnswerDelta)
    )
    s = summary_of(events)
    assert (s.thinking, s.answer, s.finish_reason) == ("The user says hi.", "Hello!", "stop")
    assert s.usage.prompt_tokens == 12
    assert s.usage.thinking_tokens + s.usage.answer_tokens == 9


def test_the_server_kind_and_host_name_the_device():
    engine, _ = recorded_engine(
        {MODELS: Answer.json(models_list("Qwen3-235B-A22B", max_model_len=32768))}
    )
    assert isinstance(engine, ChatEngine)
    info = engine.info
    assert (info.model, info.device, info.dtype) == ("Qwen3-235B-A22B", "vllm @ gpu-box", "")
    assert info.server == "http://gpu-box:8000/v1"
    assert info.context_length == 32768


def test_model_none_picks_the_first_served_model_and_a_name_picks_that_one():
    listing = Answer.json(models_list("first", "second"))
    assert recorded_engine({MODELS: listing})[0].info.model == "first"
    assert recorded_engine({MODELS: listing}, model="second")[0].info.model == "second"


def test_thinking_switch_goes_as_chat_template_kwargs():
    engine, seen = recorded_engine(
        {
            MODELS: Answer.json(models_list("m")),
            CHAT: Answer(body=sse(chat_chunk({"content": "Hi"}, "stop"))),
        }
    )
    run(engine, ChatOptions(thinking=True))
    run(engine, ChatOptions(thinking=False))
    on, off = seen.bodies(CHAT)
    assert on["chat_template_kwargs"] == {"enable_thinking": True}
    assert off["chat_template_kwargs"] == {"enable_thinking": False}
    assert on["stream"] is True and on["stream_options"] == {"include_usage": True}
    # Qwen's per-mode sampling, as the local engine uses it.
    assert (on["temperature"], on["top_p"], on["top_k"]) == (0.6, 0.95, 20)
    assert (off["temperature"], off["top_p"], off["top_k"]) == (0.7, 0.8, 20)


def test_soft_switches_pass_as_text():
    engine, seen = recorded_engine(
        {
            MODELS: Answer.json(models_list("m")),
            CHAT: Answer(body=sse(chat_chunk({"content": "ok"}, "stop"))),
        }
    )
    run(engine, messages=[{"role": "user", "content": "2+2? /no_think"}])
    assert seen.bodies(CHAT)[0]["messages"] == [{"role": "user", "content": "2+2? /no_think"}]


def test_think_tags_left_in_the_content_are_split_even_when_cut_across_chunks():
    # A server started without a reasoning parser streams the raw text.
    body = sse(
        chat_chunk({"content": "<th"}),
        chat_chunk({"content": "ink>\nLet me"}),
        chat_chunk({"content": " see.</th"}),
        chat_chunk({"content": "ink>\n\nIt is"}),
        chat_chunk({"content": " 4."}, "stop"),
    )
    engine, _ = recorded_engine({MODELS: Answer.json(models_list("m")), CHAT: Answer(body=body)})
    events = run(engine)
    assert texts(events, ThinkingDelta) == "Let me see."
    assert texts(events, AnswerDelta) == "It is 4."
    assert summary_of(events).thinking == "Let me see."


def test_content_that_starts_inside_the_block_is_thinking_up_to_the_closing_tag():
    # Templates that open the block themselves (Qwen3-2507 thinking) leave only `</think>`.
    body = sse(
        chat_chunk({"content": "Two and two"}),
        chat_chunk({"content": " is four.\n</think>"}),
        chat_chunk({"content": "\n\n4"}, "stop"),
    )
    engine, _ = recorded_engine({MODELS: Answer.json(models_list("m")), CHAT: Answer(body=body)})
    events = run(engine)
    s = summary_of(events)
    assert (s.thinking, s.answer) == ("Two and two is four.", "4")


def test_a_reply_without_any_think_tag_is_the_answer():
    body = sse(chat_chunk({"content": "Just"}), chat_chunk({"content": " this."}, "stop"))
    engine, _ = recorded_engine({MODELS: Answer.json(models_list("m")), CHAT: Answer(body=body)})
    for thinking in (True, False):
        events = run(engine, ChatOptions(thinking=thinking))
        assert texts(events, AnswerDelta) == "Just this."
        assert not any(isinstance(e, (ThinkingDelta, ThinkingDone)) for e in events)


def test_non_thinking_reply_with_the_empty_think_block_has_no_thinking():
    body = sse(
        chat_chunk({"content": "<think>\n\n</think>\n\n"}), chat_chunk({"content": "Hi."}, "stop")
    )
    engine, _ = recorded_engine({MODELS: Answer.json(models_list("m")), CHAT: Answer(body=body)})
    events = run(engine, ChatOptions(thinking=False))
    assert texts(events, AnswerDelta) == "Hi."
    assert not any(isinstance(e, (ThinkingDelta, ThinkingDone)) for e in events)


def test_a_server_that_ignores_the_thinking_switch_still_shows_what_it_thought():
    engine, _ = recorded_engine(
        {MODELS: Answer.json(models_list("m")), CHAT: Answer(body=reasoning_stream("reasoning"))}
    )
    s = summary_of(run(engine, ChatOptions(thinking=False)))
    assert (s.thinking, s.answer, s.thinking_enabled) == ("The user says hi.", "Hello!", False)


def test_whitespace_only_reasoning_is_no_thinking():
    # transformers serve streams the prompt's empty block as reasoning "\n\n" with thinking off.
    body = sse(
        chat_chunk({"reasoning_content": "\n\n"}),
        chat_chunk({"content": "\n\nAnswer"}),
        chat_chunk({}, "stop"),
    )
    engine, _ = recorded_engine({MODELS: Answer.json(models_list("m")), CHAT: Answer(body=body)})
    events = run(engine, ChatOptions(thinking=False))
    assert [type(e) for e in events] == [AnswerDelta, Summary]
    s = summary_of(events)
    assert (s.thinking, s.answer, s.usage.thinking_tokens) == ("", "Answer", 0)


def test_length_finish_and_reasoning_token_details():
    body = sse(
        chat_chunk({"reasoning_content": "Long"}),
        chat_chunk({"content": "Cut"}, "length"),
        usage_chunk(prompt=5, completion=30, reasoning_tokens=20),
    )
    engine, _ = recorded_engine({MODELS: Answer.json(models_list("m")), CHAT: Answer(body=body)})
    s = summary_of(run(engine, ChatOptions(max_new_tokens=30)))
    assert s.finish_reason == "length"
    assert (s.usage.prompt_tokens, s.usage.thinking_tokens, s.usage.answer_tokens) == (5, 20, 10)


def test_llama_cpp_timings_are_its_own_speeds():
    final = chat_chunk({}, "stop")
    final["usage"] = {"completion_tokens": 3, "prompt_tokens": 7, "total_tokens": 10}
    final["timings"] = {
        "prompt_n": 7,
        "prompt_ms": 10.0,
        "prompt_per_second": 700.0,
        "predicted_n": 3,
        "predicted_ms": 60.0,
        "predicted_per_second": 50.0,
    }
    body = sse(chat_chunk({"reasoning_content": "Hm"}), chat_chunk({"content": "A"}), final)
    engine, _ = recorded_engine(
        {
            MODELS: Answer.json(
                models_list(
                    "qwen3-8b-q4_k_m.gguf", owned_by="llamacpp", meta={"n_ctx_train": 40960}
                )
            ),
            CHAT: Answer(body=body),
        }
    )
    assert engine.info.device == "llama.cpp @ gpu-box"
    assert engine.info.context_length == 40960
    s = summary_of(run(engine))
    assert (s.timings.prefill_tok_s, s.timings.decode_tok_s) == (700.0, 50.0)


def test_ollama_native_chat_streams_thinking_and_sends_think():
    body = ndjson(
        {
            "model": "qwen3:8b",
            "message": {"role": "assistant", "content": "", "thinking": "Hmm"},
            "done": False,
        },
        {
            "model": "qwen3:8b",
            "message": {"role": "assistant", "content": "", "thinking": ", hi."},
            "done": False,
        },
        {"model": "qwen3:8b", "message": {"role": "assistant", "content": "Hello"}, "done": False},
        {
            "model": "qwen3:8b",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 11,
            "prompt_eval_duration": 10_000_000,
            "eval_count": 6,
            "eval_duration": 100_000_000,
        },
    )
    engine, seen = recorded_engine(
        {
            MODELS: Answer.json(models_list("qwen3:8b", owned_by="library")),
            "/api/chat": Answer(body=body, content_type="application/x-ndjson"),
        },
        model="qwen3:8b",
        base_url="http://localhost:11434",
    )
    assert engine.info.device == "ollama @ localhost"
    events = run(engine, ChatOptions(thinking=False, max_new_tokens=100))
    s = summary_of(events)
    assert (s.thinking, s.answer) == ("Hmm, hi.", "Hello")
    assert (s.usage.prompt_tokens, s.timings.prefill_tok_s, s.timings.decode_tok_s) == (
        11,
        1100.0,
        60.0,
    )
    sent = seen.bodies("/api/chat")[0]
    assert sent["think"] is False and sent["stream"] is True
    assert sent["options"]["num_predict"] == 100 and sent["options"]["temperature"] == 0.7


def test_an_unknown_owner_that_answers_api_version_is_ollama():
    engine, _ = recorded_engine(
        {
            MODELS: Answer.json(models_list("qwen3:8b", owned_by="someone")),
            "/api/version": Answer.json({"version": "0.40.12"}),
        },
        base_url="http://localhost:11434/v1",
    )
    assert engine.info.device == "ollama @ localhost"


def test_a_server_that_ignores_stream_answers_whole():
    whole = {
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "reasoning_content": "Hm.", "content": "Yes."},
            }
        ],
        "usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7},
    }
    engine, _ = recorded_engine({MODELS: Answer.json(models_list("m")), CHAT: Answer.json(whole)})
    s = summary_of(run(engine))
    assert (s.thinking, s.answer, s.usage.prompt_tokens) == ("Hm.", "Yes.", 4)


def test_sse_comments_and_event_lines_are_skipped_and_done_is_optional():
    body = (
        b": ping\n\nevent: message\ndata: "
        + sse(chat_chunk({"content": "ok"}, "stop"), done=False)[6:]
    )
    engine, _ = recorded_engine({MODELS: Answer.json(models_list("m")), CHAT: Answer(body=body)})
    assert summary_of(run(engine)).answer == "ok"


def test_an_error_inside_the_stream_raises_after_the_partial_reply():
    body = sse(
        chat_chunk({"content": "Part"}),
        {"error": {"message": "CUDA out of memory\nmore", "code": 500}},
    )
    engine, _ = recorded_engine({MODELS: Answer.json(models_list("m")), CHAT: Answer(body=body)})
    got = []
    with pytest.raises(ServerStreamError) as err:
        for event in engine.chat(HI, ChatOptions(thinking=False)):
            got.append(event)
    assert texts(got, AnswerDelta) == "Part"
    assert not any(isinstance(e, Summary) for e in got)
    assert "CUDA out of memory" in str(err.value) and "\n" not in str(err.value)


def test_malformed_events_raise_a_one_line_error_after_the_partial_reply():
    body = sse(chat_chunk({"content": "Part"}), "{not json at all")
    engine, _ = recorded_engine({MODELS: Answer.json(models_list("m")), CHAT: Answer(body=body)})
    got = []
    with pytest.raises(MalformedStreamError) as err:
        got.extend(engine.chat(HI, ChatOptions(thinking=False)))
    assert "not a JSON object" in str(err.value) and "\n" not in str(err.value)


def test_a_stream_that_ends_without_finishing_is_an_interruption_not_a_summary():
    body = sse(chat_chunk({"content": "Half a"}), done=False)
    engine, _ = recorded_engine({MODELS: Answer.json(models_list("m")), CHAT: Answer(body=body)})
    got = []
    with pytest.raises(StreamInterruptedError):
        for event in engine.chat(HI, ChatOptions(thinking=False)):
            got.append(event)
    assert texts(got, AnswerDelta) == "Half a"
    assert not any(isinstance(e, Summary) for e in got)


def test_a_refused_optional_field_is_dropped_and_not_sent_again():
    refusal = Answer.json(
        {"error": {"message": "top_k: Extra inputs are not permitted"}}, status=400
    )
    ok = Answer(body=sse(chat_chunk({"content": "ok"}, "stop")))
    engine, seen = recorded_engine({MODELS: Answer.json(models_list("m")), CHAT: [refusal, ok, ok]})
    assert summary_of(run(engine)).answer == "ok"
    assert summary_of(run(engine)).answer == "ok"
    first, retried, later = seen.bodies(CHAT)
    assert "top_k" in first and "top_k" not in retried and "top_k" not in later


def test_max_tokens_is_sent_only_when_the_user_chose_it():
    ok = Answer(body=sse(chat_chunk({"content": "ok"}, "stop")))
    engine, seen = recorded_engine({MODELS: Answer.json(models_list("m")), CHAT: ok})
    run(engine)
    run(engine, ChatOptions(max_new_tokens=64))
    default, chosen = seen.bodies(CHAT)
    assert "max_tokens" not in default  # the server's own limit: what is left of its context
    assert chosen["max_tokens"] == 64


def test_the_remote_engine_imports_no_torch_and_no_textual():
    import subprocess
    import sys

    code = (
        "import sys, qwen3tui.remote;"
        "bad = [m for m in ('torch', 'textual', 'qwen3tui.store') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_reply_cut_while_thinking_counts_all_its_tokens_as_thinking():
    body = sse(
        chat_chunk({"reasoning_content": "Hmm"}),
        chat_chunk({"reasoning_content": " ok"}, "length"),
        usage_chunk(prompt=9, completion=40),
    )
    engine, _ = recorded_engine({MODELS: Answer.json(models_list("m")), CHAT: Answer(body=body)})
    s = summary_of(run(engine, ChatOptions(max_new_tokens=40)))
    assert (s.finish_reason, s.answer, s.usage.thinking_tokens, s.usage.answer_tokens) == (
        "length",
        "",
        40,
        0,
    )


@pytest.mark.parametrize(
    ("raw", "options", "thinking", "answer"),
    [
        (
            "<think>\nLet me see.</think>\n\nIt is 4.<|im_end|>",
            {"expect_thinking": True},
            "Let me see.",
            "It is 4.",
        ),
        (
            "Let me see.\n</think>\n\nIt is 4.",
            {"expect_thinking": True, "opened": True},
            "Let me see.",
            "It is 4.",
        ),
        ("<think>\n\n</think>\n\nIt is 4.", {"expect_thinking": False}, "", "It is 4."),
    ],
)
def test_the_split_is_the_same_wherever_the_chunks_are_cut(raw, options, thinking, answer):
    from qwen3tui.remote.reply_split import ReplySplitter

    for i in range(len(raw) + 1):
        for j in range(i, len(raw) + 1):
            split = ReplySplitter(**options)
            for chunk in (raw[:i], raw[i:j], raw[j:]):
                split.feed("", chunk)
            split.finish()
            assert (split.thinking, split.answer) == (thinking, answer), (i, j)
