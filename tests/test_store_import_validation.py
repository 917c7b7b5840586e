"""validate_export: one function checks a whole export before anything is written."""

from __future__ import annotations

from typing import Any

import pytest

from qwen3tui.store import ImportFormatError
from qwen3tui.store.export import EXPORT_FORMAT, load_export, validate_export


def export(**session: Any) -> dict[str, Any]:
    message = {
        "role": "assistant",
        "content": "hi",
        "created": "2026-01-01T00:00:00+00:00",
        "updated": "2026-01-01T00:00:00+00:00",
        "budget": 64,
        "sampling": {"temperature": 0.6, "top_k": 20, "seed": 2**64 - 1},
    }
    base = {
        "title": "t",
        "created": "2026-01-01T00:00:00+00:00",
        "updated": "2026-01-01T00:00:00+00:00",
        "model": "m",
        "settings": {"thinking": True, "thinking_budget": 1024, "max_tokens": 512},
        "messages": [message],
    }
    return {"format": EXPORT_FORMAT, "version": 1, "session": {**base, **session}}


def test_a_good_export_passes_and_each_generation_value_reaches_the_range_check() -> None:
    seen: list[tuple[str, Any]] = []
    validate_export(export(), check_value=lambda name, value: seen.append((name, value)))
    assert sorted(seen) == sorted(
        [
            ("thinking_budget", 1024),
            ("max_tokens", 512),
            ("thinking_budget", 64),
            ("temperature", 0.6),
            ("top_k", 20),
            ("seed", 2**64 - 1),
        ]
    )


def test_a_range_check_failure_refuses_the_import_in_one_line_naming_the_value() -> None:
    def no_big_budgets(name: str, value: Any) -> None:
        if name == "thinking_budget" and value > 100:
            raise ValueError(f"{name} = {value} is not allowed:\nuse at most 100")

    with pytest.raises(ImportFormatError) as caught:
        validate_export(export(), check_value=no_big_budgets)
    message = str(caught.value)
    assert "session.settings.thinking_budget" in message and "at most 100" in message
    assert "\n" not in message


def test_deep_data_handed_over_directly_is_refused_without_recursion() -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    data = export()
    data["session"]["messages"][0]["usage"] = {"deep": deep}
    with pytest.raises(ImportFormatError, match="levels deep"):
        validate_export(data)


@pytest.mark.parametrize("word", ["NaN", "Infinity", "-Infinity"])
def test_json_constants_that_are_not_numbers_are_refused_when_loading(word: str) -> None:
    with pytest.raises(ImportFormatError, match=word):
        load_export(f'{{"x": {word}}}', "e.json")


def test_an_integer_too_long_to_read_is_one_line() -> None:
    with pytest.raises(ImportFormatError) as caught:
        load_export('{"x": ' + "9" * 5000 + "}", "e.json")
    assert "e.json" in str(caught.value) and "\n" not in str(caught.value)
