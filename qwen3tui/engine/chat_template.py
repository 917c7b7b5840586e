"""Qwen3 chat prompts: the checkpoint's own Jinja chat template, or a built-in equivalent.

The model's template is rendered the way transformers' `apply_chat_template` renders it (same
sandboxed Jinja settings, same variables, same message clean-up), so the prompt is byte for byte
what the reference produces; the sandbox also bounds the render's time and size
(`template_sandbox`). Checkpoints without a template get `render_builtin`, a Python rendering of
the official Qwen3 template for system/user/assistant conversations. Which thinking modes the
model has is read from what its template renders (`thinking_mode`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext

from .content_escape import ContentEscaper
from .errors import EngineError, ModelLoadError
from .template_sandbox import (
    BoundedSandbox,
    ChatTemplateError,
    TemplateEmptyError,
    TemplateRecursionError,
    TemplateRenderError,
    TemplateTooLargeError,
    TemplateTooSlowError,
    guard_filter,
    render_bounded,
)
from .thinking_mode import ThinkingMode, classify_generation_prompts
from .tokenizer import named_special_tokens, read_json_file

__all__ = [
    "BUILTIN_SOURCE",
    "ChatTemplate",
    "ChatTemplateError",
    "TemplateEmptyError",
    "TemplateRecursionError",
    "TemplateRenderError",
    "TemplateTooLargeError",
    "TemplateTooSlowError",
    "make_environment",
    "prepare_messages",
    "render_builtin",
]

BUILTIN_SOURCE = "builtin"

# transformers fills `reasoning_content` from these older names (first one present wins).
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")

_EMPTY_THINK_BLOCK = "<think>\n\n</think>\n\n"

# Conversations rendered to learn the template's thinking mode (the second for templates that
# insist on a system message).
_MODE_PROBES = (
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
)


def _first_line(err: object) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Jinja's own tojson HTML-escapes <, >, & and ': chat templates want the plain JSON.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def make_environment() -> BoundedSandbox:
    """A sandbox set up as transformers sets up its chat-template environment (and bounded)."""
    env = BoundedSandbox(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = guard_filter("tojson", _tojson)
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


def prepare_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copy the messages as transformers does before rendering.

    Keys whose value is None are dropped (templates treat a missing key well and a None badly),
    and reasoning given as `thinking` or `reasoning` is also offered as `reasoning_content`.
    """
    if not messages:
        raise ValueError("cannot render a chat prompt without messages")
    prepared = []
    for message in messages:
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise ValueError(f"a chat message must be a dict with a 'role' string, got {message!r}")
        clean = {key: value for key, value in message.items() if value is not None}
        reasoning = next((clean[k] for k in _REASONING_FIELDS if k in clean), None)
        if reasoning is not None:
            clean = {"thinking": reasoning, **clean, "reasoning_content": reasoning}
        prepared.append(clean)
    return prepared


class ChatTemplate:
    """Renders a list of {role, content} messages into the prompt text for the model."""

    def __init__(
        self,
        template_text: str | None,
        *,
        source: str = BUILTIN_SOURCE,
        special_tokens: Mapping[str, str] | None = None,
    ) -> None:
        """`template_text` None means the built-in Qwen3 rendering."""
        self.source = source
        self.template_text = template_text
        self._special_tokens = dict(special_tokens or {})
        self._template: jinja2.Template | None = None
        if template_text is not None:
            try:
                self._template = make_environment().compile_bounded(template_text)
            except jinja2.TemplateSyntaxError as err:
                raise ModelLoadError(
                    f"The chat template in {source} has a Jinja syntax error at line {err.lineno}:"
                    f" {_first_line(err.message or err)}.",
                    f"Fix the template, or remove it from {Path(source).name} to use the built-in"
                    " Qwen3 template.",
                ) from None

    @classmethod
    def from_dir(cls, path: str | Path) -> ChatTemplate:
        """The checkpoint's template: chat_template.jinja if present (as transformers prefers), else
        tokenizer_config.json's `chat_template` (a string, or named templates: "default");
        the built-in one when there is none."""
        folder = Path(path)
        config = read_json_file(folder / "tokenizer_config.json") or {}
        special = named_special_tokens(config)
        jinja_file = folder / "chat_template.jinja"
        if jinja_file.is_file():
            try:
                text = jinja_file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as err:
                raise ModelLoadError(
                    f"Cannot read {jinja_file}: {_first_line(err)}.", "Re-download the checkpoint."
                ) from None
            return cls(text, source=str(jinja_file), special_tokens=special)
        config_file = str(folder / "tokenizer_config.json")
        text = _pick_template(config.get("chat_template"), config_file)
        if text is None:
            return cls.builtin(special_tokens=special)
        return cls(text, source=config_file, special_tokens=special)

    @classmethod
    def builtin(cls, special_tokens: Mapping[str, str] | None = None) -> ChatTemplate:
        return cls(None, source=BUILTIN_SOURCE, special_tokens=special_tokens)

    @property
    def is_builtin(self) -> bool:
        return self._template is None

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = True,
        enable_thinking: bool = True,
        escaper: ContentEscaper | None = None,
    ) -> str:
        """The prompt text. With add_generation_prompt it ends with the template's generation
        prompt ("<|im_start|>assistant\\n" for Qwen3 thinking on, the empty think block after it
        for thinking off). With an `escaper`, control strings inside the messages come out
        escaped, for `Qwen3Tokenizer.encode_prompt`."""
        prepared = prepare_messages(messages)
        if escaper is not None:
            prepared = escaper.escape_messages(prepared)
        if self._template is None:
            return render_builtin(
                prepared,
                add_generation_prompt=add_generation_prompt,
                enable_thinking=enable_thinking,
            )
        variables = {
            **self._special_tokens,
            "messages": prepared,
            "tools": None,
            "documents": None,
            "add_generation_prompt": add_generation_prompt,
            "enable_thinking": enable_thinking,
        }
        return render_bounded(
            self._template, variables, source=self.source, input_chars=_text_size(prepared)
        )

    @property
    def thinking_mode(self) -> ThinkingMode:
        """ "hybrid", "thinking" (thinking-only) or "instruct" (instruct-only), from what the
        template renders; "hybrid" when that cannot be told (see `thinking_mode_note`)."""
        return self._mode_and_note[0]

    @property
    def thinking_mode_note(self) -> str | None:
        """One line saying the mode was assumed, for a template of no known kind; else None."""
        return self._mode_and_note[1]

    @cached_property
    def _mode_and_note(self) -> tuple[ThinkingMode, str | None]:
        reason = "its generation prompt matches no known Qwen3 kind"
        for probe in _MODE_PROBES:
            try:
                on = self.render(probe, enable_thinking=True)
                off = self.render(probe, enable_thinking=False)
            except (
                TemplateTooLargeError,
                TemplateTooSlowError,
                TemplateRecursionError,
                TemplateEmptyError,
            ):
                raise  # a template that cannot render "Hi" (within bounds) is refused at load
            except (EngineError, ValueError) as err:
                reason = (
                    f"it fails on a test conversation ({_first_line(getattr(err, 'problem', err))})"
                )
                continue
            mode = classify_generation_prompts(on, off)
            if mode is not None:
                return mode, None
            break
        return "hybrid", (
            f"Cannot tell the thinking mode of the chat template in {self.source}: {reason};"
            " assuming Qwen3's hybrid thinking (on/off)."
        )


def _text_size(value: Any) -> int:
    """Characters of text in the messages: the output may grow with them."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, Mapping):
        return sum(_text_size(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_text_size(v) for v in value)
    return 0


def _pick_template(value: Any, config_file: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        named = {
            item.get("name"): item.get("template") for item in value if isinstance(item, Mapping)
        }
        if isinstance(named.get("default"), str):
            return named["default"]
        raise ModelLoadError(
            f"{config_file} lists chat templates {sorted(map(str, named))}"
            " but none named 'default'.",
            "Name one of them 'default', or remove 'chat_template' to use the built-in one.",
        )
    raise ModelLoadError(
        f"'chat_template' in {config_file} is neither a string nor a list of named templates.",
        "Fix it, or remove it to use the built-in Qwen3 template.",
    )


# -- the built-in Qwen3 template ------------------------------------------------------------------


def _is_tool_response(content: str) -> bool:
    return content.startswith("<tool_response>") and content.endswith("</tool_response>")


def _last_query_index(messages: list[dict[str, Any]]) -> int:
    """The last user message that is a real query (not a wrapped tool response)."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message["role"] == "user" and not _is_tool_response(message["content"]):
            return index
    return len(messages) - 1


def _split_reasoning(message: dict[str, Any]) -> tuple[str, str]:
    """(reasoning, answer) of an assistant message, as the official template splits them."""
    content = message["content"]
    if "reasoning_content" in message:
        return message["reasoning_content"], content
    if "</think>" not in content:
        return "", content
    before, after = content.split("</think>")[0], content.split("</think>")[-1]
    reasoning = before.rstrip("\n").split("<think>")[-1].lstrip("\n")
    return reasoning, after.lstrip("\n")


def render_builtin(
    messages: list[dict[str, Any]], *, add_generation_prompt: bool, enable_thinking: bool
) -> str:
    """What the official Qwen3 chat template renders for system/user/assistant messages.

    Earlier turns' reasoning is dropped; assistant turns after the last user query (an unfinished
    reply being continued) keep theirs inside a think block.
    """
    for message in messages:
        if message["role"] not in ("system", "user", "assistant"):
            raise ValueError(f"the built-in chat template has no role {message['role']!r}")
        if not isinstance(message.get("content"), str):
            raise ValueError(f"a {message['role']} message needs string 'content'")
        if message.get("tool_calls"):
            raise ValueError("the built-in chat template does not render tool calls")
    last_query = _last_query_index(messages)
    parts = []
    if messages[0]["role"] == "system":
        parts.append(f"<|im_start|>system\n{messages[0]['content']}<|im_end|>\n")
    for index, message in enumerate(messages):
        role, content = message["role"], message["content"]
        if role == "user" or (role == "system" and index > 0):
            parts.append(f"<|im_start|>{role}\n{content}<|im_end|>\n")
        elif role == "assistant":
            reasoning, answer = _split_reasoning(message)
            is_last = index == len(messages) - 1
            if index > last_query and (is_last or reasoning):
                parts.append(
                    f"<|im_start|>assistant\n<think>\n{reasoning.strip(chr(10))}\n</think>\n\n"
                    f"{answer.lstrip(chr(10))}"
                )
            else:
                parts.append(f"<|im_start|>assistant\n{answer}")
            parts.append("<|im_end|>\n")
    if add_generation_prompt:
        parts.append("<|im_start|>assistant\n")
        if not enable_thinking:
            parts.append(_EMPTY_THINK_BLOCK)
    return "".join(parts)
