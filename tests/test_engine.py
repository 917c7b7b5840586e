"""The engine end to end on a tiny random checkpoint: prefix reuse, context limits, sampling."""

from __future__ import annotations

import pytest
import torch

from qwen3tui.engine import (
    ChatOptions,
    ContextNotice,
    ContextOverflowError,
    SamplingOverrides,
    Summary,
    load_engine,
)
from qwen3tui.engine.options import NON_THINKING_DEFAULTS, SamplingParams, default_sampling
from qwen3tui.engine.sampler import Sampler

GREEDY = SamplingOverrides(temperature=0.0)


@pytest.fixture(scope="module")
def engine(tiny_checkpoint):
    return load_engine(str(tiny_checkpoint), device="cpu", dtype="float32", context_length=2048)


def reply(engine, messages, **options) -> tuple[list, Summary]:
    events = list(engine.chat(messages, ChatOptions(**options)))
    assert isinstance(events[-1], Summary)
    return events, events[-1]


def test_engine_reports_what_it_loaded(engine, tiny_checkpoint):
    info = engine.info
    assert (info.device, info.dtype, info.context_length) == ("cpu", "float32", 2048)
    assert info.path == str(tiny_checkpoint)
    assert info.num_parameters == sum(p.numel() for p in engine.model.parameters())


def test_second_turn_prefills_only_what_the_cache_lacks(engine):
    engine.reset_cache()
    first = [{"role": "user", "content": "Tell me about the sea. " * 10}]
    _, s1 = reply(engine, first, thinking=False, max_new_tokens=8, sampling=GREEDY)
    assert s1.prefilled_tokens == s1.usage.prompt_tokens
    second = first + [
        {"role": "assistant", "content": s1.answer},
        {"role": "user", "content": "And the sky?"},
    ]
    _, s2 = reply(engine, second, thinking=False, max_new_tokens=8, sampling=GREEDY)
    reused = s2.usage.prompt_tokens - s2.prefilled_tokens
    # Everything of turn one is reused but its empty think block, which history omits.
    assert reused == s1.usage.prompt_tokens - len(
        engine.tokenizer.encode("<think>\n\n</think>\n\n")
    )
    # Reuse changes nothing: the same turn computed from an empty cache gives the same tokens.
    engine.reset_cache()
    _, fresh = reply(engine, second, thinking=False, max_new_tokens=8, sampling=GREEDY)
    assert fresh.prefilled_tokens == fresh.usage.prompt_tokens
    assert fresh.token_ids == s2.token_ids


def test_thinking_prompt_opens_the_think_block_and_non_thinking_closes_it(engine):
    messages = [{"role": "user", "content": "hi"}]
    tok = engine.tokenizer
    on = engine.prompt_ids(messages, thinking=True)
    off = engine.prompt_ids(messages, thinking=False)
    assert on[-2:] == tok.encode("<think>\n")
    assert tok.decode(off).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_same_seed_gives_the_same_reply(engine):
    messages = [{"role": "user", "content": "hello"}]
    seeded = SamplingOverrides(temperature=1.0, seed=42)
    _, a = reply(engine, messages, thinking=False, max_new_tokens=12, sampling=seeded)
    _, b = reply(engine, messages, thinking=False, max_new_tokens=12, sampling=seeded)
    assert a.token_ids == b.token_ids and len(a.token_ids) == 12


def test_long_history_is_trimmed_from_the_oldest_turn_keeping_system_and_new_message(
    tiny_checkpoint,
):
    small = load_engine(str(tiny_checkpoint), device="cpu", dtype="float32", context_length=256)
    system = {"role": "system", "content": "You are terse."}
    history = []
    for i in range(12):
        history += [
            {"role": "user", "content": f"question {i} " + "filler " * 10},
            {"role": "assistant", "content": f"answer {i}"},
        ]
    messages = [system, *history, {"role": "user", "content": "the newest question"}]
    events, summary = reply(small, messages, thinking=False, max_new_tokens=16, sampling=GREEDY)
    notices = [e for e in events if isinstance(e, ContextNotice)]
    assert len(notices) == 1 and notices[0].dropped_messages % 2 == 0
    assert summary.usage.prompt_tokens + 16 <= 256
    prompt = small.tokenizer.decode(small.cache.tokens[: summary.usage.prompt_tokens])
    assert "You are terse." in prompt and "the newest question" in prompt
    assert "question 0 " not in prompt and "question 11 " in prompt


def test_a_message_too_long_for_the_context_is_a_clear_error(tiny_checkpoint):
    small = load_engine(str(tiny_checkpoint), device="cpu", dtype="float32", context_length=64)
    with pytest.raises(ContextOverflowError, match="only .* fit in the context"):
        list(small.chat([{"role": "user", "content": "word " * 200}], ChatOptions()))


def test_mode_defaults_follow_qwen_guidance_and_the_checkpoint():
    checkpoint = {"temperature": 0.6, "top_k": 20, "top_p": 0.95, "do_sample": True}
    assert default_sampling(True, checkpoint) == SamplingParams(0.6, 0.95, 20, 0.0)
    assert default_sampling(True, {"temperature": 0.3}).temperature == 0.3
    assert default_sampling(False, checkpoint) == NON_THINKING_DEFAULTS
    assert SamplingOverrides(top_k=5).apply(NON_THINKING_DEFAULTS).top_k == 5


def logits_for(values: dict[int, float], vocab: int = 10) -> torch.Tensor:
    out = torch.full((vocab,), -1e9)
    for i, v in values.items():
        out[i] = v
    return out


def draws(params: SamplingParams, logits: torch.Tensor, n: int = 300) -> set[int]:
    sampler = Sampler(params, logits.shape[0], torch.device("cpu"))
    return {int(sampler(logits)) for _ in range(n)}


def test_sampler_filters():
    logits = logits_for({0: 3.0, 1: 2.9, 2: 2.8, 3: 0.0})
    assert draws(SamplingParams(temperature=0), logits) == {0}
    assert draws(SamplingParams(temperature=1, top_k=2, top_p=1), logits) == {0, 1}
    # min-p 0.5 keeps tokens at least half as likely as the best: 0, 1 and 2 but not 3.
    assert draws(SamplingParams(temperature=1, top_k=0, top_p=1, min_p=0.5), logits) == {0, 1, 2}
    # top-p: token 0 alone holds ~36%; 0.3 keeps only it, 0.5 adds the next.
    assert draws(SamplingParams(temperature=1, top_k=0, top_p=0.3), logits) == {0}
    assert draws(SamplingParams(temperature=1, top_k=0, top_p=0.5), logits) == {0, 1}


def test_presence_penalty_pushes_away_tokens_already_generated():
    logits = logits_for({0: 1.0, 1: 0.9})
    sampler = Sampler(SamplingParams(temperature=0, presence_penalty=0.5), 10, torch.device("cpu"))
    first = int(sampler(logits))
    sampler.observe(first)
    assert (first, int(sampler(logits))) == (0, 1)


def test_device_and_dtype_choices():
    from qwen3tui.engine.device import pick_device, pick_dtype
    from qwen3tui.engine.errors import DeviceError

    cpu = pick_device("cpu")
    assert cpu.type == "cpu"
    assert pick_dtype("float32", cpu) == torch.float32
    assert pick_dtype("auto", cpu) in (torch.bfloat16, torch.float32)
    with pytest.raises(DeviceError, match="unknown dtype 'int4'"):
        pick_dtype("int4", cpu)
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        pick_device("tpu")


def test_a_long_prompt_prefilled_in_chunks_gives_the_same_reply(engine, monkeypatch):
    import qwen3tui.engine.generate as generate_module

    messages = [{"role": "user", "content": "many words " * 700}]
    options = dict(thinking=False, max_new_tokens=6, sampling=GREEDY)
    engine.reset_cache()
    _, chunked = reply(engine, messages, **options)
    assert chunked.prefilled_tokens > 2 * generate_module.PREFILL_CHUNK_DEFAULT
    monkeypatch.setattr(generate_module, "PREFILL_CHUNK_DEFAULT", 100_000)
    engine.reset_cache()
    _, whole = reply(engine, messages, **options)
    assert chunked.token_ids == whole.token_ids


def test_warming_after_a_reply_leaves_only_the_new_message_to_prefill(engine):
    engine.reset_cache()
    first = [{"role": "user", "content": "Tell me about the sea. " * 10}]
    options = dict(thinking=True, max_new_tokens=12, sampling=GREEDY)
    _, s1 = reply(engine, first, **options)
    history = first + [{"role": "assistant", "content": s1.answer or "ok"}]
    warmed = engine.prepare_next_turn(history)
    assert warmed > 0  # the reply is rendered without its reasoning: that part is new

    second = history + [{"role": "user", "content": "And the sky?"}]
    _, s2 = reply(engine, second, **options)
    # Left for the turn: the new message's own tokens and the generation prompt, no more.
    new_part = engine.tokenizer.encode("And the sky?<|im_end|>\n<|im_start|>assistant\n<think>\n")
    assert s2.prefilled_tokens == len(new_part)
    # Warming changes nothing: the same turn from an empty cache gives the same tokens.
    engine.reset_cache()
    _, fresh = reply(engine, second, **options)
    assert fresh.token_ids == s2.token_ids


def test_warming_is_idempotent_and_skips_what_is_cached(engine):
    engine.reset_cache()
    history = [
        {"role": "user", "content": "Hello there."},
        {"role": "assistant", "content": "Hi! How can I help?"},
    ]
    assert engine.prepare_next_turn(history) > 0
    assert engine.prepare_next_turn(history) == 0


def test_a_reply_asked_for_while_warming_takes_over_at_the_next_chunk(engine, monkeypatch):
    import threading

    import qwen3tui.engine.generate as generate_module

    monkeypatch.setattr(generate_module, "PREFILL_CHUNK_DEFAULT", 4)  # many small chunks
    history = [
        {"role": "user", "content": "many words " * 200},
        {"role": "assistant", "content": "fine " * 200},
    ]
    second = history + [{"role": "user", "content": "And then?"}]
    options = dict(thinking=False, max_new_tokens=6, sampling=GREEDY)
    engine.reset_cache()
    # The warm-up prefills one chunk, then waits at the next chunk boundary until the reply
    # has asked for the engine: the same interleaving on every run, however loaded the CPU.
    import time

    import qwen3tui.engine.engine as engine_module

    one_chunk_done = threading.Event()

    real_prefill = engine_module.prefill

    def prefill_that_pauses(model, cache, ids, stop, step):
        calls = 0

        def stop_after_the_reply_asks() -> bool:
            nonlocal calls
            calls += 1
            if calls == 2:
                one_chunk_done.set()
                while not stop():  # true once chat() has asked the warm-up to give way
                    time.sleep(0.001)
            return stop()

        return real_prefill(model, cache, ids, stop_after_the_reply_asks, step)

    monkeypatch.setattr(engine_module, "prefill", prefill_that_pauses)
    warmed: list[int] = []
    warm = threading.Thread(target=lambda: warmed.append(engine.prepare_next_turn(history)))
    warm.start()
    assert one_chunk_done.wait(timeout=600)
    _, during = reply(engine, second, **options)  # no "already generating" error
    warm.join()
    assert 0 < warmed[0] < engine.count_tokens(history, thinking=False)  # it stopped early
    # The cache holds the reply's prompt and tokens: the warm-up wrote nothing after it.
    assert engine.cache.tokens == engine.prompt_ids(second, thinking=False) + during.token_ids
    assert during.prefilled_tokens < during.usage.prompt_tokens  # the warm-up's part is kept
    engine.reset_cache()
    _, fresh = reply(engine, second, **options)
    assert fresh.token_ids == during.token_ids


def test_warming_does_nothing_while_a_reply_runs(engine):
    engine.reset_cache()
    messages = [{"role": "user", "content": "Hi"}]
    stream = engine.chat(messages, ChatOptions(thinking=False, max_new_tokens=4, sampling=GREEDY))
    next(stream, None)  # the reply now holds the engine
    assert engine.prepare_next_turn(messages + [{"role": "assistant", "content": "x"}]) == 0
    list(stream)


def test_the_budget_sentence_is_encoded_once_per_tokenizer_not_per_reply():
    from qwen3tui.engine.generate import BUDGET_STOP_TEXT, budget_stop_ids

    class Counting:
        calls = 0

        def encode(self, text: str) -> list[int]:
            Counting.calls += 1
            return [len(text), 1]

    tokenizer = Counting()
    assert budget_stop_ids(tokenizer) == (len(BUDGET_STOP_TEXT), 1)
    assert budget_stop_ids(tokenizer) == (len(BUDGET_STOP_TEXT), 1)
    assert Counting.calls == 1
