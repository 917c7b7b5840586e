"""A Jinja sandbox for the chat templates checkpoints ship, bounded in time and output size.

Jinja's sandbox blocks escapes (private attributes, unsafe callables) but not exhaustion: a
template can build a 300 MB string, loop 10^10 times or recurse forever, and a downloaded
checkpoint's template is untrusted code. Here each render has a budget: every loop iteration,
call, attribute lookup and intercepted operator is a step (a fixed number, so the same template
and conversation always pass or always fail), a wall-clock deadline backs that up, operators and
calls whose result would be too large are refused before they allocate, and the output is
measured as it streams. Each way of exceeding the budget is a one-line error.
"""

from __future__ import annotations

import contextvars
import functools
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import ModelLoadError

# A prompt that fits any Qwen3 context (262,144 tokens) is far shorter than this; the output may
# also grow with the conversation itself (twice its text), so long histories are never refused.
MAX_OUTPUT_CHARS = 8_000_000
MAX_STEPS = 2_000_000  # the official template needs ~20 steps per message
STEPS_PER_MESSAGE = 2_000
MAX_SECONDS = 10.0
# Every value a template builds counts against this many times the output limit, freed or not,
# so many medium values (a lazy map of 8 MB strings) cannot add up; the official template builds
# about six times the conversation's text.
ALLOCATION_FACTOR = 8
MAX_POWER_BITS = 1_000_000  # `**` results beyond this (~300,000 digits) are refused
LOOP_GUARD_FILTER = "qwen3tui_loop_guard"

_FIX = "Fix or remove the checkpoint's chat template (it may be hostile)."


class ChatTemplateError(ModelLoadError):
    """The checkpoint's chat template could not render a prompt."""


class TemplateRenderError(ChatTemplateError):
    """The template raised an error (raise_exception, a type error, a sandbox violation)."""


class TemplateTooLargeError(ChatTemplateError):
    """The template's output, or a value it built, is larger than the limit."""


class TemplateTooSlowError(ChatTemplateError):
    """The template ran for more steps or longer than allowed (e.g. nested loops)."""


class TemplateRecursionError(ChatTemplateError):
    """The template recursed too deeply (a macro or recursive loop calling itself)."""


class TemplateEmptyError(ChatTemplateError):
    """The template rendered nothing (or only whitespace) for a conversation."""


class _Exceeded(Exception):
    """Raised inside a render; `render_bounded` turns it into a one-line ChatTemplateError."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind  # "size" or "time"
        self.detail = detail


def _clock() -> float:
    return time.monotonic()


@dataclass
class RenderBudget:
    max_chars: int
    max_steps: int
    deadline: float
    steps: int = 0
    built: int = 0  # characters (or items) of every value built so far

    @property
    def max_built(self) -> int:
        return ALLOCATION_FACTOR * self.max_chars

    def tick(self) -> None:
        self.steps += 1
        if self.steps > self.max_steps:
            raise _Exceeded("time", f"did not finish within {self.max_steps:,} steps")
        if (self.steps & 1023) == 0 and _clock() > self.deadline:
            raise _Exceeded("time", f"did not finish within {MAX_SECONDS:g} s")

    def check_size(self, size: int) -> None:
        if size > self.max_chars:
            raise _Exceeded("size", f"produced more than {self.max_chars:,} characters")

    def count_built(self, size: int) -> None:
        self.built += size
        if self.built > self.max_built:
            raise _Exceeded("size", f"built more than {self.max_built:,} characters in all")


_active: contextvars.ContextVar[RenderBudget | None] = contextvars.ContextVar(
    "qwen3tui_template_budget", default=None
)


def _tick() -> None:
    budget = _active.get()
    if budget is not None:
        budget.tick()


def _max_chars() -> int:
    budget = _active.get()
    return budget.max_chars if budget is not None else MAX_OUTPUT_CHARS


def _refuse_if_over(size: int) -> None:
    if size > _max_chars():
        raise _Exceeded("size", f"built a value of more than {_max_chars():,} characters")


def _sized(value: Any) -> Any:
    if isinstance(value, (str, list, tuple, dict)):
        _refuse_if_over(len(value))
        budget = _active.get()
        if budget is not None:
            budget.count_built(len(value))
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_ints(args: Iterable[Any], kwargs: Mapping[str, Any]) -> None:
    # Widths, counts and repeats above the output limit can only build something too large.
    for value in (*args, *kwargs.values()):
        if _is_int(value):
            _refuse_if_over(abs(value))


def _len(value: Any) -> int:
    return len(value) if isinstance(value, (str, list, tuple)) else 0


# -- estimates of what an operation would allocate, checked before it runs --------------------

_PERCENT_SPEC = re.compile(r"%[#0 +\-]*(\d*)(?:\.(\d*))?")


def _check_format_string(fmt: str, percent: bool) -> None:
    """Widths and precisions written into a format string ("%999999999d", "{:>999999999}")."""
    specs: list[str] = []
    if percent:
        specs = [n for m in _PERCENT_SPEC.finditer(fmt) for n in m.groups() if n]
    else:
        for _, _, spec, _ in string.Formatter().parse(fmt):
            specs += re.findall(r"\d+", spec or "")
    for number in specs:
        _refuse_if_over(int(number) if len(number) < 20 else 10**20)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        if _is_int(right) and isinstance(left, (str, list, tuple)):
            _refuse_if_over(len(left) * right)
        elif _is_int(left) and isinstance(right, (str, list, tuple)):
            _refuse_if_over(len(right) * left)
    elif operator == "+":
        _refuse_if_over(_len(left) + _len(right))
    elif operator == "%" and isinstance(left, str):
        _check_format_string(left, percent=True)
        values = right if isinstance(right, tuple) else (right,)
        _check_ints(values, right if isinstance(right, Mapping) else {})
    elif operator == "**" and _is_int(left) and _is_int(right) and abs(left) > 1 and right > 0:
        if left.bit_length() * right > MAX_POWER_BITS:
            raise _Exceeded("size", f"computed a number of more than {MAX_POWER_BITS:,} bits")


def _replace_size(text: str, old: Any, new: Any, count: Any = -1) -> int:
    if not isinstance(old, str) or not isinstance(new, str):
        return len(text)
    found = text.count(old) if old else len(text) + 1
    if _is_int(count) and count >= 0:
        found = min(found, count)
    return len(text) + found * max(0, len(new) - len(old))


def _str_method_size(text: str, name: str, args: tuple, kwargs: dict) -> int:
    """An upper bound on what a str method call returns (only the ones that can grow)."""
    if name == "replace" and len(args) >= 2:
        return _replace_size(text, *args[:3])
    if name in ("center", "ljust", "rjust", "zfill") and args and _is_int(args[0]):
        return max(len(text), args[0])
    if name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        return len(text) + text.count("\t") * (size if _is_int(size) else 8)
    if name == "join" and args and isinstance(args[0], (list, tuple)):
        return sum(map(_len, args[0])) + len(text) * len(args[0])
    if name == "translate" and args and isinstance(args[0], Mapping):
        longest = max((_len(v) for v in args[0].values()), default=1)
        return len(text) * max(1, longest)
    return len(text)


def _check_call(obj: Any, args: tuple, kwargs: dict) -> tuple:
    """Refuse a call that would build too much; returns the args to call with."""
    _check_ints(args, kwargs)
    if isinstance(obj, LoopContext) and args:
        # `loop(children)` in a recursive for-loop: its iterations are steps like any loop's.
        args = (_guarded_iter(args[0]), *args[1:])
    owner = getattr(obj, "__self__", None)
    if isinstance(owner, str):
        name = getattr(obj, "__name__", "")
        if name == "join" and args and not isinstance(args[0], (list, tuple, str)):
            args = (list(_guarded_iter(args[0])), *args[1:])  # measure what a generator joins
        _refuse_if_over(_str_method_size(owner, name, args, kwargs))
    return args


def _filter_size(name: str, value: Any, args: tuple, kwargs: dict) -> int:
    """An upper bound on what a built-in filter returns (only the ones that can grow)."""
    if name == "join":
        sep = args[0] if args else kwargs.get("d", "")
        items = value if isinstance(value, (list, tuple, str)) else ()
        return sum(map(_len, items)) + _len(sep) * len(items)
    if not isinstance(value, str):
        return 0
    if name == "replace" and len(args) >= 2:
        return _replace_size(value, *args[:3])
    if name == "center":
        width = args[0] if args else kwargs.get("width", 80)
        return max(len(value), width if _is_int(width) else 0)
    if name == "indent":
        width = args[0] if args else kwargs.get("width", 4)
        prefix = width if _is_int(width) else _len(width)
        return len(value) + (value.count("\n") + 1) * prefix
    if name == "wordwrap":
        wrap = args[2] if len(args) > 2 else kwargs.get("wrapstring")
        return len(value) + (len(value) + 1) * max(1, _len(wrap))
    if name == "format":
        _check_format_string(value, percent=True)
    return len(value)


def guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    # Filters that take the context or environment first get the value second.
    offset = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        if len(args) > offset:
            value, rest = args[offset], args[offset + 1 :]
            if name == "join" and not isinstance(value, (list, tuple, str)):
                value = list(_guarded_iter(value))
                args = (*args[:offset], value, *rest)
            _check_ints(rest, kwargs)
            _refuse_if_over(_filter_size(name, value, rest, kwargs))
        return _sized(func(*args, **kwargs))

    return guarded


def _guarded_iter(iterable: Iterable[Any]) -> Iterator[Any]:
    """Every loop iteration is a step: nested loops cannot run unbounded."""
    for item in iterable:
        _tick()
        yield item


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The transformers-compatible sandbox with a step, time and size budget per render."""

    intercepted_binops = frozenset({"*", "+", "%", "**"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals.pop("lipsum", None)  # text generator with unbounded sizes; no template uses it
        self.filters = {name: guard_filter(name, f) for name, f in self.filters.items()}
        self.filters[LOOP_GUARD_FILTER] = _guarded_iter

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _tick()
        _check_binop(operator, left, right)
        return _sized(super().call_binop(context, operator, left, right))

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _tick()
        args = _check_call(obj, args, kwargs)
        return _sized(super().call(context, obj, *args, **kwargs))

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            _tick()
            _check_format_string(fmt, percent=False)
            _check_ints(args, kwargs)
            return _sized(wrapped(*args, **kwargs))

        return checked

    def compile_bounded(self, source: str) -> jinja2.Template:
        """Compile `source` with every for-loop's iterable passed through the loop guard."""
        tree = self.parse(source)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(
                loop.iter, LOOP_GUARD_FILTER, [], [], None, None, lineno=loop.iter.lineno
            )
        return self.from_string(tree)


def _first_line(err: object) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def render_bounded(
    template: jinja2.Template, variables: dict[str, Any], *, source: str, input_chars: int
) -> str:
    """Render within the budget; every failure is a one-line ChatTemplateError."""
    messages = variables.get("messages") or ()
    budget = RenderBudget(
        max_chars=MAX_OUTPUT_CHARS + 2 * input_chars,
        max_steps=MAX_STEPS + STEPS_PER_MESSAGE * len(messages),
        deadline=_clock() + MAX_SECONDS,
    )
    where = f"The chat template in {source}"
    token = _active.set(budget)
    try:
        parts, size = [], 0
        for chunk in template.generate(**variables):
            size += len(chunk)
            budget.check_size(size)
            budget.tick()
            parts.append(chunk)
    except _Exceeded as err:
        kind = TemplateTooLargeError if err.kind == "size" else TemplateTooSlowError
        raise kind(f"{where} {err.detail}.", _FIX) from None
    except RecursionError:
        raise TemplateRecursionError(f"{where} recursed too deeply.", _FIX) from None
    except MemoryError:
        raise TemplateTooLargeError(f"{where} ran out of memory.", _FIX) from None
    except Exception as err:  # a template is code: any error it raises is the template's fault
        raise TemplateRenderError(
            f"{where} failed to render: {_first_line(err)}.",
            "Fix the template, or remove it to use the built-in Qwen3 template.",
        ) from None
    finally:
        _active.reset(token)
    text = "".join(parts)
    if not text.strip():
        raise TemplateEmptyError(f"{where} rendered an empty prompt.", _FIX)
    return text
