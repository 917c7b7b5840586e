"""Thinking modes come from the checkpoint's own chat template: hybrid (the original Qwen3),
thinking-only (Thinking-2507) and instruct-only (Instruct-2507). For each, the prompt is exactly
what transformers renders with that template, the reply is split into thinking and answer
correctly, and the thinking budget holds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from qwen3_2507_templates import (
    checkpoint_with_template,
    instruct_2507_template,
    template_for,
    thinking_2507_template,
)
from scripted_model import ScriptedModel

from qwen3tui.engine import (
    AnswerDelta,
    ChatOptions,
    EngineInfo,
    SamplingOverrides,
    Summary,
    ThinkingDelta,
    ThinkingDone,
    load_engine,
    thinking_mode_label,
    thinking_switch_note,
)
from qwen3tui.engine.chat_template import ChatTemplate, TemplateTooSlowError
from qwen3tui.engine.config import Qwen3Config
from qwen3tui.engine.engine import Engine
from qwen3tui.engine.generate import BUDGET_STOP_TEXT, Request, generate, prompt_opens_thinking
from qwen3tui.engine.kv_cache import KVCache
from qwen3tui.engine.options import NON_THINKING_DEFAULTS, SamplingParams
from qwen3tui.engine.random_checkpoint import TINY_CONFIG
from qwen3tui.engine.thinking_mode import resolve_thinking

MODES = ["hybrid", "thinking", "instruct"]
GREEDY = SamplingOverrides(temperature=0.0)

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
CONVERSATIONS = {
    "single turn": [{"role": "user", "content": "What is 2+2?"}],
    "single turn with system": [SYSTEM, {"role": "user", "content": "Hi"}],
    "multi-turn": [
        {"role": "user", "content": "Name a prime."},
        {"role": "assistant", "content": "7"},
        {"role": "user", "content": "Another one?"},
    ],
    "multi-turn with reasoning in earlier replies": [
        SYSTEM,
        {"role": "user", "content": "Name a prime."},
        {"role": "assistant", "content": "<think>\nSmall primes: 2, 3, 5.\n</think>\n\n5 is."},
        {"role": "user", "content": "And an even one?"},
        {"role": "assistant", "content": "2", "reasoning_content": "Only 2 is even."},
        {"role": "user", "content": "Thanks! 谢谢 🙏\n```py\nx = 1\n```"},
    ],
}


@pytest.fixture(scope="module")
def engines(tiny_checkpoint: Path, shared_dir: Path, tmp_path_factory) -> dict[str, Engine]:
    """The tiny random model with the real (hybrid) template and each 2507 variant."""
    made = {}
    for mode in MODES:
        folder = checkpoint_with_template(
            tiny_checkpoint, tmp_path_factory.mktemp(mode), template_for(mode, shared_dir)
        )
        made[mode] = load_engine(str(folder), device="cpu", dtype="float32", context_length=1024)
    return made


def official_ids(reference, mode: str, shared_dir: Path, messages, thinking: bool) -> list[int]:
    """transformers' apply_chat_template with the mode's template (the hybrid one honours
    enable_thinking; the 2507 ones have no such variable)."""
    return list(
        reference.apply_chat_template(
            messages,
            chat_template=template_for(mode, shared_dir),
            tokenize=True,
            return_dict=False,
            add_generation_prompt=True,
            enable_thinking=thinking,
        )
    )


# -- classification --------------------------------------------------------------------------


def test_each_template_is_classified_by_what_it_renders(shared_dir: Path) -> None:
    assert ChatTemplate.from_dir(shared_dir).thinking_mode == "hybrid"
    assert ChatTemplate(thinking_2507_template(shared_dir)).thinking_mode == "thinking"
    assert ChatTemplate(instruct_2507_template(shared_dir)).thinking_mode == "instruct"
    assert ChatTemplate.builtin().thinking_mode == "hybrid"
    for mode in MODES:
        assert ChatTemplate(template_for(mode, shared_dir)).thinking_mode_note is None


def test_the_mode_is_read_from_the_template_not_the_model_name(
    tiny_checkpoint: Path, shared_dir: Path, tmp_path: Path
) -> None:
    folder = checkpoint_with_template(
        tiny_checkpoint, tmp_path / "Qwen3-4B-Thinking-2507", instruct_2507_template(shared_dir)
    )
    assert ChatTemplate.from_dir(folder).thinking_mode == "instruct"


def test_a_plain_chatml_template_without_thinking_is_instruct_only() -> None:
    chatml = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    assert ChatTemplate(chatml).thinking_mode == "instruct"


@pytest.mark.parametrize(
    "template, reason",
    [
        # thinking "off" leaves a block open: no known kind
        (
            "{{ messages[0].content }}{% if enable_thinking %}A{% else %}<think>\n{% endif %}",
            "matches no known",
        ),
        ("{{ raise_exception('tools only') }}", "tools only"),
    ],
    ids=["unknown generation prompt", "fails on every conversation"],
)
def test_an_unknown_template_falls_back_to_hybrid_with_a_one_line_note(
    template: str, reason: str
) -> None:
    chat = ChatTemplate(template, source="custom.jinja")
    assert chat.thinking_mode == "hybrid"
    note = chat.thinking_mode_note
    assert note is not None and "\n" not in note
    assert "custom.jinja" in note and reason in note and "hybrid" in note


def test_a_template_that_needs_a_system_message_is_still_classified() -> None:
    template = (
        "{% if messages[0].role != 'system' %}{{ raise_exception('system first') }}{% endif %}"
        "{% for m in messages %}{{ m.content }}{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
    )
    assert ChatTemplate(template).thinking_mode == "thinking"


def test_a_template_that_hangs_is_refused_when_its_mode_is_read() -> None:
    hangs = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x"
    with pytest.raises(TemplateTooSlowError):
        ChatTemplate(hangs).thinking_mode  # noqa: B018 - the property does the work


def test_engine_info_reports_the_mode(engines: dict[str, Engine]) -> None:
    for mode, engine in engines.items():
        assert engine.info.thinking_mode == mode and engine.info.thinking_mode_note is None


def test_engine_info_defaults_to_hybrid_for_other_engines() -> None:
    info = EngineInfo("m", "/p", "cpu", "float32", 16, 1)
    assert (info.thinking_mode, info.thinking_mode_note) == ("hybrid", None)


# -- the prompt: exactly the template's --------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wanted", [True, False], ids=["think", "no-think"])
@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_prompt_ids_equal_transformers_for_each_mode(
    engines: dict[str, Engine], reference, shared_dir: Path, mode: str, wanted: bool, name: str
) -> None:
    messages = CONVERSATIONS[name]
    engine = engines[mode]
    thinking = resolve_thinking(mode, wanted)
    expected = official_ids(reference, mode, shared_dir, messages, thinking)
    if mode == "hybrid" and thinking:
        # A hybrid Qwen3 opens every thinking reply with "<think>\n"; the engine places it.
        expected += engine.tokenizer.encode("<think>\n")
    assert engine.prompt_ids(messages, wanted) == expected


@pytest.mark.parametrize("wanted", [True, False], ids=["think", "no-think"])
def test_thinking_only_prompt_opens_the_block_once(engines: dict[str, Engine], wanted) -> None:
    engine, tok = engines["thinking"], engines["thinking"].tokenizer
    ids = engine.prompt_ids(CONVERSATIONS["single turn"], wanted)
    assert tok.decode(ids).endswith("<|im_start|>assistant\n<think>\n")
    assert ids.count(tok.think_start_id) == 1 and tok.think_end_id not in ids
    assert prompt_opens_thinking(ids, tok)


@pytest.mark.parametrize("wanted", [True, False], ids=["think", "no-think"])
def test_instruct_only_prompt_has_no_think_block(engines: dict[str, Engine], wanted) -> None:
    engine, tok = engines["instruct"], engines["instruct"].tokenizer
    ids = engine.prompt_ids(CONVERSATIONS["multi-turn with reasoning in earlier replies"], wanted)
    assert tok.decode(ids).endswith("<|im_start|>assistant\n")
    assert tok.think_start_id not in ids and tok.think_end_id not in ids
    assert not prompt_opens_thinking(ids, tok)


# -- what a turn does in each mode (tiny random model, engine level) ---------------------------


def run_chat(engine: Engine, messages, **options) -> Summary:
    events = list(engine.chat(messages, ChatOptions(**options)))
    assert isinstance(events[-1], Summary)
    return events[-1]


@pytest.mark.parametrize("mode", ["thinking", "instruct"])
@pytest.mark.parametrize("wanted", [True, False], ids=["think", "no-think"])
def test_ask_json_prompt_tokens_equal_the_official_count(
    engines: dict[str, Engine], reference, shared_dir: Path, mode: str, wanted: bool
) -> None:
    """What `ask --json` reports as usage.prompt_tokens (Summary.usage.prompt_tokens)."""
    messages = CONVERSATIONS["multi-turn with reasoning in earlier replies"]
    summary = run_chat(engines[mode], messages, thinking=wanted, max_new_tokens=2, sampling=GREEDY)
    official = official_ids(reference, mode, shared_dir, messages, thinking=wanted)
    assert summary.usage.prompt_tokens == len(official)
    assert engines[mode].cache.tokens[: len(official)] == official


def test_thinking_only_model_thinks_even_when_asked_not_to_and_says_so(
    engines: dict[str, Engine],
) -> None:
    engine = engines["thinking"]
    summary = run_chat(
        engine, CONVERSATIONS["single turn"], thinking=False, max_new_tokens=4, sampling=GREEDY
    )
    assert summary.thinking_enabled is True
    assert summary.answer == "" and summary.usage.answer_tokens == 0  # still inside the block


def test_thinking_only_model_honours_a_budget_of_zero(engines: dict[str, Engine]) -> None:
    engine, tok = engines["thinking"], engines["thinking"].tokenizer
    summary = run_chat(
        engine,
        CONVERSATIONS["single turn"],
        thinking=True,
        thinking_budget=0,
        max_new_tokens=3,
        sampling=GREEDY,
    )
    stop_ids = tok.encode(BUDGET_STOP_TEXT)
    assert summary.thinking_budget_hit and summary.usage.thinking_tokens == 0
    assert summary.token_ids[: len(stop_ids)] == stop_ids
    assert summary.thinking.startswith("Considering the limited time by the user")


def test_instruct_only_model_never_thinks_even_when_asked_to(engines: dict[str, Engine]) -> None:
    engine = engines["instruct"]
    summary = run_chat(
        engine,
        CONVERSATIONS["single turn"],
        thinking=True,
        thinking_budget=0,
        max_new_tokens=4,
        sampling=GREEDY,
    )
    assert summary.thinking_enabled is False and summary.thinking == ""
    assert not summary.thinking_budget_hit and summary.usage.thinking_tokens == 0
    assert summary.thinking_budget is None
    assert engine.tokenizer.encode(BUDGET_STOP_TEXT)[2] not in summary.token_ids


def test_sampling_defaults_follow_what_the_model_does_not_what_was_asked(
    engines: dict[str, Engine],
) -> None:
    thinking_only = engines["thinking"].sampling_for(ChatOptions(thinking=False))
    assert (thinking_only.temperature, thinking_only.top_p) == (0.6, 0.95)
    assert engines["instruct"].sampling_for(ChatOptions(thinking=True)) == NON_THINKING_DEFAULTS
    assert engines["hybrid"].sampling_for(ChatOptions(thinking=False)) == NON_THINKING_DEFAULTS


# -- the reply split and the budget on each mode (scripted decoder) -----------------------------


def scripted_reply(engine: Engine, mode_wanted: bool, script: list[int], budget=None):
    tok = engine.tokenizer
    prompt = engine.prompt_ids(CONVERSATIONS["multi-turn"], mode_wanted)
    opens = prompt_opens_thinking(prompt, tok)
    config = Qwen3Config.from_dict({**TINY_CONFIG, "num_hidden_layers": 1})
    cache = KVCache(config, 4096, torch.device("cpu"), torch.float32)
    model = ScriptedModel(script, tok.vocab_size)
    request = Request(prompt, opens, budget if opens else None, 200, SamplingParams(0.0))
    events = list(generate(model, cache, tok, request))
    return events, model


def text_of(events, kind) -> str:
    return "".join(e.text for e in events if isinstance(e, kind))


@pytest.mark.parametrize("wanted", [True, False], ids=["think", "no-think"])
def test_thinking_only_reply_starts_inside_the_block(engines: dict[str, Engine], wanted) -> None:
    engine, tok = engines["thinking"], engines["thinking"].tokenizer
    thought, answer = tok.encode("Two plus two is four."), tok.encode("\n\n**4**")
    events, _ = scripted_reply(
        engine, wanted, thought + [tok.think_end_id] + answer + [tok.im_end_id]
    )
    summary = events[-1]
    assert text_of(events, ThinkingDelta) == "Two plus two is four."
    assert text_of(events, AnswerDelta) == "**4**"
    assert summary.thinking == "Two plus two is four." and summary.answer == "**4**"
    assert summary.thinking_enabled and summary.usage.thinking_tokens == len(thought)


def test_thinking_only_budget_closes_the_block_after_n_tokens(engines: dict[str, Engine]) -> None:
    engine, tok = engines["thinking"], engines["thinking"].tokenizer
    endless, answer = tok.encode(" hmm") * 100, tok.encode("Done.")
    events, model = scripted_reply(
        engine, False, endless[:10] + answer + [tok.im_end_id], budget=10
    )
    summary = events[-1]
    stop_ids = tok.encode(BUDGET_STOP_TEXT)
    assert summary.thinking_budget_hit and summary.usage.thinking_tokens == 10
    assert summary.token_ids == endless[:10] + stop_ids + answer + [tok.im_end_id]
    assert model.fed[11] == stop_ids  # prefilled as one chunk, never sampled
    assert summary.answer == "Done."
    done = [e for e in events if isinstance(e, ThinkingDone)]
    assert len(done) == 1 and done[0].budget_hit and done[0].thinking_tokens == 10


@pytest.mark.parametrize("wanted", [True, False], ids=["think", "no-think"])
def test_instruct_only_reply_is_all_answer(engines: dict[str, Engine], wanted) -> None:
    engine, tok = engines["instruct"], engines["instruct"].tokenizer
    answer = tok.encode("Sure: 11 is prime. </think> is just text here.")
    events, _ = scripted_reply(engine, wanted, answer + [tok.im_end_id])
    summary = events[-1]
    assert not any(isinstance(e, (ThinkingDelta, ThinkingDone)) for e in events)
    assert summary.answer == "Sure: 11 is prime. </think> is just text here."
    assert summary.thinking_enabled is False and summary.usage.answer_tokens == len(answer)


def test_a_reply_that_opens_its_own_think_block_is_split_too(engines: dict[str, Engine]) -> None:
    """A template that leaves the block to the model (e.g. an unknown one): a <think> as the
    reply's first token starts the thinking; later ones are ordinary text."""
    engine, tok = engines["instruct"], engines["instruct"].tokenizer
    script = (
        [tok.think_start_id]
        + tok.encode("\nreasoning")
        + [tok.think_end_id]
        + tok.encode("\n\nanswer")
        + [tok.im_end_id]
    )
    events, _ = scripted_reply(engine, False, script)
    summary = events[-1]
    assert (summary.thinking, summary.answer) == ("reasoning", "answer")
    assert text_of(events, ThinkingDelta) == "reasoning"
    assert summary.thinking_enabled is True


# -- what the UI and CLI are told ---------------------------------------------------------------


def test_switch_notes_explain_impossible_switches_in_one_line() -> None:
    assert thinking_switch_note("hybrid", True) is None
    assert thinking_switch_note("hybrid", False) is None
    assert thinking_switch_note("thinking", True) is None
    assert thinking_switch_note("instruct", False) is None
    always = thinking_switch_note("thinking", False)
    never = thinking_switch_note("instruct", True)
    assert always and "always thinks" in always and "budget" in always and "\n" not in always
    assert never and "no thinking mode" in never and "\n" not in never


def test_mode_labels_for_status_bars_and_model_lists() -> None:
    labels = [thinking_mode_label(m) for m in MODES]
    assert labels == ["thinking on/off", "thinking-only", "instruct-only"]


def test_resolve_thinking_per_mode() -> None:
    assert [resolve_thinking(m, w) for m in MODES for w in (True, False)] == [
        True,
        False,
        True,
        True,
        False,
        False,
    ]


def test_the_mode_helpers_import_without_torch() -> None:
    code = (
        "import sys; from qwen3tui.engine import thinking_switch_note, ThinkingMode;"
        "print('torch' in sys.modules or 'jinja2' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["thinking", "instruct"])
def test_ask_json_on_a_2507_variant_through_the_command_line(
    tiny_checkpoint: Path, shared_dir: Path, tmp_path: Path, reference, mode: str
) -> None:
    """Issue acceptance (`cli.main` in this process): `ask --json` reports the official
    template's token count; the thinking-only reply's reasoning is in `thinking` within its
    budget; the instruct-only reply has no think block."""
    import json

    from cli_helpers import run_cli

    folder = checkpoint_with_template(
        tiny_checkpoint, tmp_path / mode, template_for(mode, shared_dir)
    )
    question = "What is 2+2?"
    run = run_cli(
        "ask", "--model", str(folder), "--dtype", "float32", "--json", "--no-save",
        "--max-new-tokens", "8", "--budget", "3", question, home=tmp_path / "home",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    official = official_ids(
        reference, mode, shared_dir, [{"role": "user", "content": question}], True
    )
    assert out["usage"]["prompt_tokens"] == len(official)
    if mode == "thinking":
        assert out["thinking_enabled"] and out["thinking"]
        assert out["usage"]["thinking_tokens"] <= 3 and out["thinking_budget_hit"]
    else:
        assert not out["thinking_enabled"] and out["thinking"] == ""
        assert "<think>" not in out["answer"]
