"""The engine itself refuses generation values outside their ranges, before anything runs."""

from __future__ import annotations

import pytest

from qwen3tui.engine import InvalidOptionError, load_engine
from qwen3tui.engine.options import ChatOptions, SamplingOverrides, check_value, parse_value

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def engine(tiny_checkpoint):
    return load_engine(str(tiny_checkpoint), device="cpu", dtype="float32", context_length=512)


@pytest.mark.parametrize(
    "options",
    [
        ChatOptions(sampling=SamplingOverrides(top_p=0.0)),
        ChatOptions(sampling=SamplingOverrides(temperature=float("nan"))),
        ChatOptions(sampling=SamplingOverrides(min_p=5.0)),
        ChatOptions(sampling=SamplingOverrides(presence_penalty=1e308)),
        ChatOptions(sampling=SamplingOverrides(seed=2**64)),
        ChatOptions(sampling=SamplingOverrides(top_k=-3)),
        ChatOptions(max_new_tokens=0),
        ChatOptions(thinking_budget=-1),
    ],
)
def test_a_bad_value_is_refused_in_one_line_and_the_engine_still_works(engine, options):
    with pytest.raises(InvalidOptionError) as refused:
        list(engine.chat(HI, options))
    assert "\n" not in str(refused.value) and "is not allowed: use" in str(refused.value)
    events = list(engine.chat(HI, ChatOptions(max_new_tokens=2, thinking=False)))
    assert events[-1].finish_reason == "length"  # nothing was left half-started


def test_the_edges_of_each_range_are_allowed() -> None:
    assert check_value("top_p", 1.0) == 1.0 and check_value("temperature", 0) == 0.0
    assert check_value("seed", 2**64 - 1) == 2**64 - 1 and check_value("thinking_budget", 0) == 0
    assert parse_value("top_k", "1_000") == 1000
    with pytest.raises(InvalidOptionError, match="top_k = 2.5 is not allowed"):
        parse_value("top_k", "2.5")
