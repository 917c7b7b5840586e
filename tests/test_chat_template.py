"""Chat prompts: the checkpoint's own template and the built-in fallback both render exactly what
transformers' apply_chat_template renders with the official Qwen3 template."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest

from qwen3tui.engine.chat_template import ChatTemplate
from qwen3tui.engine.errors import ModelLoadError
from qwen3tui.engine.tokenizer import Qwen3Tokenizer

SYSTEM = {"role": "system", "content": "You are a helpful assistant.\nAnswer briefly."}

CONVERSATIONS = {
    "single turn": [{"role": "user", "content": "What is 2+2?"}],
    "single turn with system": [SYSTEM, {"role": "user", "content": "Hi"}],
    "multi-turn": [
        {"role": "user", "content": "Name a prime."},
        {"role": "assistant", "content": "7"},
        {"role": "user", "content": "Another one?"},
    ],
    "multi-turn with system and reasoning in earlier replies": [
        SYSTEM,
        {"role": "user", "content": "Name a prime."},
        {
            "role": "assistant",
            "content": "<think>\nSmall primes: 2, 3, 5, 7.\n</think>\n\n7 is prime.",
        },
        {"role": "user", "content": "And an even one?"},
        {"role": "assistant", "content": "<think>\n\n</think>\n\n2"},
        {"role": "user", "content": "Thanks /no_think"},
    ],
    "reasoning given as reasoning_content": [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1", "reasoning_content": "r1"},
        {"role": "user", "content": "q2"},
    ],
    "multi-line content and code": [
        SYSTEM,
        {
            "role": "user",
            "content": "Fix this:\n```python\ndef f(x):\n    return x+1\n```\n\n谢谢 🙏",
        },
        {
            "role": "assistant",
            "content": "<think>\nIt is fine.\n\nMaybe indent?\n</think>\n\n\n```python\n"
            "def f(x):\n\treturn x + 1\n```",
        },
        {"role": "user", "content": "  leading spaces\nand trailing newline\n"},
    ],
    "a system message later in the conversation": [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi"},
        {"role": "system", "content": "Switch to French."},
        {"role": "user", "content": "bonjour"},
    ],
    "None-valued keys are ignored": [
        {"role": "user", "content": "q", "name": None},
        {"role": "assistant", "content": "a", "reasoning_content": None},
        {"role": "user", "content": "q2"},
    ],
}

# Conversations that end with an assistant message (rendered without a generation prompt):
# the reply after the last query keeps its reasoning.
UNFINISHED_REPLIES = {
    "reply with think tags": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "<think>\nstep 1\n</think>\n\nanswer"},
    ],
    "reply without reasoning": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "\nanswer"},
    ],
    "reply with thinking field": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "answer", "thinking": "\nhmm\n"},
    ],
}


@pytest.fixture(scope="module")
def no_template_dir(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real checkpoint files with `chat_template` removed from tokenizer_config.json."""
    folder = tmp_path_factory.mktemp("no-template")
    for name in ("tokenizer.json", "config.json", "generation_config.json"):
        shutil.copy(shared_dir / name, folder / name)
    config = json.loads((shared_dir / "tokenizer_config.json").read_text())
    del config["chat_template"]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def templates(shared_dir: Path, no_template_dir: Path) -> dict[str, ChatTemplate]:
    return {
        "checkpoint": ChatTemplate.from_dir(shared_dir),
        "builtin": ChatTemplate.from_dir(no_template_dir),
    }


@pytest.fixture(scope="module")
def tok(shared_dir: Path) -> Qwen3Tokenizer:
    return Qwen3Tokenizer.from_dir(shared_dir)


def test_the_checkpoint_template_is_used_and_the_fallback_when_absent(
    templates: dict[str, ChatTemplate], shared_dir: Path
) -> None:
    assert not templates["checkpoint"].is_builtin
    assert templates["checkpoint"].source == str(shared_dir / "tokenizer_config.json")
    assert templates["builtin"].is_builtin


@pytest.mark.parametrize("kind", ["checkpoint", "builtin"])
@pytest.mark.parametrize("thinking", [True, False], ids=["think", "no-think"])
@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_prompt_equals_transformers(
    templates: dict[str, ChatTemplate], reference, kind: str, thinking: bool, name: str
) -> None:
    messages = CONVERSATIONS[name]
    expected = reference.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, enable_thinking=thinking
    )
    assert templates[kind].render(messages, enable_thinking=thinking) == expected


@pytest.mark.parametrize("kind", ["checkpoint", "builtin"])
@pytest.mark.parametrize("name", list(UNFINISHED_REPLIES))
def test_unfinished_reply_without_generation_prompt_equals_transformers(
    templates: dict[str, ChatTemplate], reference, kind: str, name: str
) -> None:
    messages = UNFINISHED_REPLIES[name]
    expected = reference.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    assert templates[kind].render(messages, add_generation_prompt=False) == expected


@pytest.mark.parametrize("kind", ["checkpoint", "builtin"])
def test_earlier_reasoning_is_not_sent_back(templates: dict[str, ChatTemplate], kind: str) -> None:
    messages = CONVERSATIONS["multi-turn with system and reasoning in earlier replies"]
    prompt = templates[kind].render(messages)
    assert "Small primes" not in prompt
    assert "<think>" not in prompt
    assert "<|im_start|>assistant\n7 is prime.<|im_end|>\n" in prompt


@pytest.mark.parametrize("kind", ["checkpoint", "builtin"])
def test_generation_prompt_ends_by_mode(templates: dict[str, ChatTemplate], kind: str) -> None:
    messages = CONVERSATIONS["single turn"]
    on = templates[kind].render(messages, enable_thinking=True)
    off = templates[kind].render(messages, enable_thinking=False)
    assert on.endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert off == on + "<think>\n\n</think>\n\n"


@pytest.mark.parametrize("thinking", [True, False], ids=["think", "no-think"])
def test_token_ids_of_rendered_prompts_equal_transformers(
    templates: dict[str, ChatTemplate], tok: Qwen3Tokenizer, reference, thinking: bool
) -> None:
    for messages in CONVERSATIONS.values():
        expected = reference.apply_chat_template(
            messages,
            tokenize=True,
            return_dict=False,
            add_generation_prompt=True,
            enable_thinking=thinking,
        )
        rendered = templates["checkpoint"].render(messages, enable_thinking=thinking)
        assert tok.encode(rendered) == list(expected)


def test_appending_the_think_opener_appends_its_ids(
    templates: dict[str, ChatTemplate], tok: Qwen3Tokenizer
) -> None:
    """The engine may encode the prompt and the opener "<think>\\n" separately."""
    prompt = templates["checkpoint"].render(CONVERSATIONS["multi-line content and code"])
    opener = tok.encode("<think>\n")
    assert opener == [tok.think_start_id, tok.encode("\n")[0]]
    assert tok.encode(prompt + "<think>\n") == tok.encode(prompt) + opener


# -- templates other than the shipped one ----------------------------------------------------------


def write_config(folder: Path, chat_template: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    if chat_template is not None:
        config["chat_template"] = chat_template
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def test_environment_matches_transformers_on_a_feature_heavy_template(reference) -> None:
    """tojson without HTML escaping, loop controls, strftime_now, special-token variables,
    trim_blocks/lstrip_blocks, and enable_thinking as a variable."""
    template = (
        "{% for m in messages %}\n"
        "  {% if loop.index > 2 %}{% break %}{% endif %}\n"
        "  {{ m | tojson }}|{{ m | tojson(indent=2, sort_keys=true) }}\n"
        "{% endfor %}\n"
        "{{ eos_token }}{{ pad_token }}{{ strftime_now('%Y') }}"
        "{% if enable_thinking is false %}off{% endif %}"
    )
    messages = [
        {"role": "user", "content": "<b>&'\"</b> naïve 你好 😀"},
        {"role": "assistant", "content": "x"},
        {"role": "user", "content": "never shown"},
    ]
    ours = ChatTemplate(
        template,
        source="test",
        special_tokens={"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    )
    expected = reference.apply_chat_template(
        messages, chat_template=template, tokenize=False, enable_thinking=False
    )
    assert ours.render(messages, enable_thinking=False) == expected
    assert '"<b>&\'\\"</b> naïve 你好 😀"' in expected and "never shown" not in expected
    assert str(datetime.now().year) in expected


def test_named_templates_use_the_default_one(tmp_path: Path) -> None:
    folder = write_config(
        tmp_path,
        [
            {"name": "tool_use", "template": "TOOLS"},
            {"name": "default", "template": "{{ messages[0].content }}!"},
        ],
    )
    assert ChatTemplate.from_dir(folder).render([{"role": "user", "content": "hey"}]) == "hey!"


def test_named_templates_without_a_default_are_a_one_line_error(tmp_path: Path) -> None:
    folder = write_config(tmp_path, [{"name": "tool_use", "template": "TOOLS"}])
    with pytest.raises(ModelLoadError) as caught:
        ChatTemplate.from_dir(folder)
    assert "default" in str(caught.value) and "\n" not in str(caught.value)


def test_chat_template_jinja_file_takes_priority(tmp_path: Path) -> None:
    folder = write_config(tmp_path, "from config")
    (folder / "chat_template.jinja").write_text("from file: {{ messages | length }}")
    template = ChatTemplate.from_dir(folder)
    assert template.render([{"role": "user", "content": "x"}]) == "from file: 1"
    assert template.source == str(folder / "chat_template.jinja")


def test_template_syntax_error_is_a_one_line_model_load_error(tmp_path: Path) -> None:
    folder = write_config(tmp_path, "{% for m in messages %}{{ m.content }\n{% endfor %}")
    with pytest.raises(ModelLoadError) as caught:
        ChatTemplate.from_dir(folder)
    message = str(caught.value)
    assert "syntax error" in message and "tokenizer_config.json" in message
    assert "\n" not in message


def test_raise_exception_in_a_template_is_a_model_load_error(tmp_path: Path) -> None:
    folder = write_config(tmp_path, "{{ raise_exception('only user messages, please') }}")
    with pytest.raises(ModelLoadError) as caught:
        ChatTemplate.from_dir(folder).render([{"role": "user", "content": "x"}])
    assert "only user messages, please" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_template_runs_in_a_sandbox(tmp_path: Path) -> None:
    folder = write_config(tmp_path, "{{ messages.__class__.__mro__ }}")
    with pytest.raises(ModelLoadError):
        ChatTemplate.from_dir(folder).render([{"role": "user", "content": "x"}])


def test_missing_tokenizer_config_falls_back_to_builtin(tmp_path: Path) -> None:
    template = ChatTemplate.from_dir(tmp_path)
    assert template.is_builtin
    assert template.render([{"role": "user", "content": "x"}], enable_thinking=False) == (
        "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )


def test_builtin_rejects_roles_it_cannot_render() -> None:
    with pytest.raises(ValueError, match="tool"):
        ChatTemplate.builtin().render(
            [{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}]
        )


def test_empty_conversation_is_rejected(templates: dict[str, ChatTemplate]) -> None:
    with pytest.raises(ValueError, match="without messages"):
        templates["checkpoint"].render([])
