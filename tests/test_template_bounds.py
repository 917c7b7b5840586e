"""A checkpoint's chat template is untrusted code: its rendering is bounded in steps, time and
output size, and every way it can fail is a one-line EngineError (never a hang, a traceback or
an allocation that kills the process). The Jinja sandbox stays in place."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from qwen3_2507_templates import checkpoint_with_template

import qwen3tui.engine.template_sandbox as sandbox
from qwen3tui.engine import EngineError, ModelLoadError, load_engine
from qwen3tui.engine.chat_template import (
    ChatTemplate,
    ChatTemplateError,
    TemplateEmptyError,
    TemplateRecursionError,
    TemplateRenderError,
    TemplateTooLargeError,
    TemplateTooSlowError,
)

HI = [{"role": "user", "content": "Hi"}]


def render(template: str, messages=HI) -> str:
    return ChatTemplate(template, source="hostile.jinja").render(messages)


def assert_one_line(err: pytest.ExceptionInfo, *words: str) -> None:
    message = str(err.value)
    assert isinstance(err.value, ChatTemplateError) and isinstance(err.value, ModelLoadError)
    assert "\n" not in message and "hostile.jinja" in message
    for word in words:
        assert word in message


# Each builds far more than any prompt: refused before the allocation (or, for many values
# each small enough, before they add up).
HUGE_VALUES = {
    "string repeat": "{{ 'A' * 300000000 }}",
    "list repeat": "{{ ([0] * 300000000) | length }}",
    "doubling by +": (
        "{% set ns = namespace(s='A') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}"
        "{% endfor %}{{ ns.s | length }}"
    ),
    "%-format width": "{{ '%300000000d' % 1 }}",
    "str.format width": "{{ '{:>300000000}'.format('') }}",
    "center filter": "{{ '' | center(300000000) }}",
    "ljust method": "{{ 'x'.ljust(300000000) }}",
    "replace filter": "{{ ('A' * 1000000) | replace('A', 'A' * 1000) }}",
    "replace method": "{{ ('A' * 1000000).replace('A', 'A' * 1000) }}",
    "indent filter": "{{ ('\\n' * 1000000) | indent('A' * 1000) }}",
    "join filter": "{{ ('A' * 1000) | join('B' * 10000) }}",
    "join method": "{{ ('B' * 10000).join(range(1000) | map('string')) }}",
    "wordwrap filter": "{{ ('a ' * 100000) | wordwrap(1, wrapstring='B' * 1000) }}",
    "huge power": "{{ 10 ** (10 ** 9) }}",
    "output in many chunks": "{% for i in range(100000) %}{{ 'A' * 1000 }}{% endfor %}",
    "many medium values": "{{ (range(100000) | map('center', 8000000) | list) | length }}",
    "many medium values joined": "{{ range(100000) | map('center', 8000000) | join }}",
}


@pytest.mark.parametrize("template", list(HUGE_VALUES.values()), ids=list(HUGE_VALUES))
def test_a_template_cannot_build_a_huge_value(template: str) -> None:
    with pytest.raises(TemplateTooLargeError) as caught:
        render(template)
    assert_one_line(caught, "more than")


ENDLESS = {
    "nested range loops": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    ),
    "nested loops over one range": (
        "{% set r = range(100000) %}{% for i in r %}{% for j in r %}{% endfor %}{% endfor %}"
    ),
    "nested loops over a string": (
        "{% set s = 'A' * 100000 %}{% for i in s %}{% for j in s %}{% endfor %}{% endfor %}"
    ),
    "recursive loop": (
        "{% for x in range(100000) recursive %}"
        "{% if loop.depth < 3 %}{{ loop(range(100000)) }}{% endif %}{% endfor %}"
    ),
}


@pytest.mark.parametrize("template", list(ENDLESS.values()), ids=list(ENDLESS))
def test_a_template_cannot_loop_for_ever(template: str, monkeypatch) -> None:
    # A smaller step budget keeps the test quick; the limit is a count, not a clock.
    monkeypatch.setattr(sandbox, "MAX_STEPS", 50_000)
    with pytest.raises(TemplateTooSlowError) as caught:
        render(template)
    assert_one_line(caught, "steps")


def test_the_real_step_limit_stops_nested_loops() -> None:
    with pytest.raises(TemplateTooSlowError):
        render(ENDLESS["nested range loops"])


def test_a_slow_template_stops_at_the_deadline(monkeypatch) -> None:
    ticks = itertools.count()
    monkeypatch.setattr(sandbox, "_clock", lambda: float(next(ticks)))  # 1 s per reading
    monkeypatch.setattr(sandbox, "MAX_SECONDS", 3.0)
    with pytest.raises(TemplateTooSlowError) as caught:
        render(ENDLESS["nested range loops"])
    assert_one_line(caught, "3 s")


@pytest.mark.parametrize(
    "template",
    [
        "{% macro f(x) %}{{ f(x) }}{% endmacro %}{{ f(1) }}",
        "{% for m in messages recursive %}{{ loop(messages) }}{% endfor %}",
    ],
    ids=["macro", "recursive loop"],
)
def test_a_template_that_recurses_is_a_one_line_error(template: str) -> None:
    with pytest.raises(TemplateRecursionError) as caught:
        render(template)
    assert_one_line(caught, "recursed")


@pytest.mark.parametrize("template", ["", "{% if false %}x{% endif %}", "  \n\n  "])
def test_a_template_that_renders_nothing_is_a_one_line_error(template: str) -> None:
    with pytest.raises(TemplateEmptyError) as caught:
        render(template)
    assert_one_line(caught, "empty prompt")


@pytest.mark.parametrize(
    "template, words",
    [
        ("{{ 1 + 'a' }}", ["unsupported operand"]),
        ("{% include 'other.jinja' %}", ["no loader"]),
        ("{{ messages.__class__.__mro__ }}", ["unsafe"]),
        ("{{ ''.__class__.__subclasses__() }}", ["unsafe"]),
        ("{{ range.__globals__.keys() }}", ["unsafe"]),
        ("{{ lipsum(n=5) }}", ["lipsum"]),  # removed: unbounded text generator
    ],
)
def test_other_failures_are_one_line_errors_and_the_sandbox_holds(template, words) -> None:
    with pytest.raises(TemplateRenderError) as caught:
        render(template)
    assert_one_line(caught, "failed to render", *words)


def test_long_real_conversations_stay_within_the_bounds(shared_dir: Path) -> None:
    """The limits grow with the conversation: 1,500 turns of 10,000 characters render."""
    template = ChatTemplate.from_dir(shared_dir)
    turns = []
    for i in range(750):
        turns += [
            {"role": "user", "content": f"question {i} " + "x" * 10_000},
            {"role": "assistant", "content": f"<think>\nr{i}\n</think>\n\n" + "y" * 10_000},
        ]
    prompt = template.render([*turns, {"role": "user", "content": "last"}])
    assert len(prompt) > sandbox.MAX_OUTPUT_CHARS and prompt.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize(
    "template, error",
    [
        (HUGE_VALUES["string repeat"], TemplateTooLargeError),
        (ENDLESS["nested range loops"], TemplateTooSlowError),
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", TemplateRecursionError),
        ("{# nothing #}", TemplateEmptyError),
    ],
    ids=["huge", "endless", "recursion", "empty"],
)
def test_a_hostile_template_fails_the_load_in_one_line(
    template: str, error: type, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    folder = checkpoint_with_template(tiny_checkpoint, tmp_path / "hostile", template)
    with pytest.raises(error) as caught:
        load_engine(str(folder), device="cpu", dtype="float32", context_length=64)
    assert isinstance(caught.value, EngineError) and "\n" not in str(caught.value)
    assert "tokenizer_config.json" in str(caught.value)
