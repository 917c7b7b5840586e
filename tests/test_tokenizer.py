"""The Qwen3 tokenizer wrapper: ids read from the checkpoint files, encoding and decoding exactly as
transformers does, and streaming decode that never shows half a character."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from qwen3tui.engine.errors import ModelLoadError
from qwen3tui.engine.tokenizer import Qwen3Tokenizer, StreamDecoder

MIXED_TEXTS = [
    "你好，世界！今天我们来讨论一下量子计算的基本原理。",
    "Family 👨‍👩‍👧‍👦, flags 🇯🇵🇫🇷🏳️‍🌈, skin tones 👍🏽, and plain 🎉🚀.",
    "def f(x):\n    if x:\n\t\treturn {'a': [1, 2]}  # trailing  \n\n    return None\r\n",
    "Café, naïve, Ångström, résumé, Ελληνικά, Привет, مرحبا, हिन्दी",
    "混合 mixed 😀 text: `print('你好')` → ✓ — “quotes” … 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𠀀",
    "<think>\nLet me think 🤔 about 数学.\n</think>\n\nThe answer is 42.<|im_end|>",
]


@pytest.fixture(scope="module")
def tok(shared_dir: Path) -> Qwen3Tokenizer:
    return Qwen3Tokenizer.from_dir(shared_dir)


def stream(decoder: StreamDecoder, ids: list[int]) -> list[str]:
    chunks = [decoder.push(i) for i in ids]
    chunks.append(decoder.flush())
    return chunks


# -- special ids -----------------------------------------------------------------------------------


def test_special_ids_of_the_real_qwen3_tokenizer(tok: Qwen3Tokenizer) -> None:
    assert tok.think_start_id == 151667
    assert tok.think_end_id == 151668
    assert tok.im_start_id == 151644
    assert tok.im_end_id == 151645
    assert tok.eos_token_ids == frozenset({151645, 151643})  # <|im_end|>, <|endoftext|>
    assert tok.pad_token_id == 151643
    assert tok.vocab_size == 151669
    assert tok.token_id("<tool_call>") == 151657
    assert tok.special_tokens == {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}


def write_toy_tokenizer(
    folder: Path, tokens: list[str], config: dict | None = None, generation: dict | None = None
) -> Path:
    """A word-level tokenizer whose special tokens sit at ids unlike Qwen3's."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {w: i for i, w in enumerate(["hello", "world", "[UNK]"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens(tokens)
    backend.save(str(folder / "tokenizer.json"))
    if config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    if generation is not None:
        (folder / "generation_config.json").write_text(json.dumps(generation))
    return folder


def test_special_ids_are_read_from_the_files_not_assumed(tmp_path: Path) -> None:
    tokens = ["<|endoftext|>", "</think>", "<|im_end|>", "<think>", "<|im_start|>", "<|stop|>"]
    folder = write_toy_tokenizer(
        tmp_path / "toy",
        tokens,
        config={"eos_token": {"content": "<|stop|>"}, "pad_token": "<|endoftext|>"},
        generation={"eos_token_id": 4},
    )
    toy = Qwen3Tokenizer.from_dir(folder)
    ids = {t: toy.token_id(t) for t in tokens}
    assert ids == {t: 3 + i for i, t in enumerate(tokens)}
    assert (toy.think_start_id, toy.think_end_id) == (ids["<think>"], ids["</think>"])
    assert (toy.im_start_id, toy.im_end_id) == (ids["<|im_start|>"], ids["<|im_end|>"])
    # <|im_end|>, <|endoftext|>, tokenizer_config's eos_token and generation_config's eos ids
    assert toy.eos_token_ids == {ids["<|im_end|>"], ids["<|endoftext|>"], ids["<|stop|>"], 4}
    assert toy.pad_token_id == ids["<|endoftext|>"]


def test_generation_config_eos_list_is_added_to_end_of_turn_ids(tmp_path: Path) -> None:
    tokens = ["<|im_start|>", "<|im_end|>", "<think>", "</think>"]
    toy = Qwen3Tokenizer.from_dir(
        write_toy_tokenizer(tmp_path / "toy", tokens, generation={"eos_token_id": [0, 1]})
    )
    assert toy.eos_token_ids == {toy.im_end_id, 0, 1}


def test_unknown_token_string_raises_key_error(tok: Qwen3Tokenizer) -> None:
    with pytest.raises(KeyError):
        tok.token_id("<|not-a-token|>")


# -- encode / decode parity with transformers ------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    MIXED_TEXTS
    + [
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
        "literal <|im_start|>inside<|im_end|> text and <tool_call>{}</tool_call>",
        "  leading spaces and trailing\n\n\n",
        "Cafe\u0301 decomposed",
        "",
    ],
)
def test_encode_matches_transformers(tok: Qwen3Tokenizer, reference, text: str) -> None:
    assert tok.encode(text) == reference.encode(text, add_special_tokens=False)
    # No BOS or other token is added around the text.
    assert tok.encode(text) == reference(text)["input_ids"]


def test_special_tokens_in_text_become_single_ids(tok: Qwen3Tokenizer) -> None:
    assert tok.encode("<|im_start|>") == [tok.im_start_id]
    assert tok.encode("<think>\n") == [tok.think_start_id, tok.encode("\n")[0]]
    assert tok.encode("</think>\n\n") == [tok.think_end_id, tok.encode("\n\n")[0]]
    assert len(tok.encode("\n\n")) == 1


def test_encode_normalizes_to_nfc_like_the_reference(tok: Qwen3Tokenizer) -> None:
    """tokenizer.json's NFC normalizer runs on encode: decoding gives the composed form."""
    assert tok.decode(tok.encode("Cafe\u0301")) == "Caf\u00e9"


@pytest.mark.parametrize("skip", [False, True])
def test_decode_matches_transformers(tok: Qwen3Tokenizer, reference, skip: bool) -> None:
    for text in MIXED_TEXTS:
        ids = tok.encode("<|im_start|>assistant\n" + text + "<|im_end|>")
        assert tok.decode(ids, skip_special_tokens=skip) == reference.decode(
            ids, skip_special_tokens=skip
        )


# -- streaming decode ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", MIXED_TEXTS)
def test_stream_equals_full_decode_and_never_shows_half_a_character(
    tok: Qwen3Tokenizer, text: str
) -> None:
    ids = tok.encode(text)
    chunks = stream(tok.stream_decoder(), ids)
    assert "".join(chunks) == tok.decode(ids)
    assert not any("\ufffd" in chunk for chunk in chunks)


def test_stream_holds_back_a_split_emoji_until_it_is_complete(tok: Qwen3Tokenizer) -> None:
    ids = tok.encode(" 🇯🇵")
    assert tok.decode(ids[:1]) == " \ufffd"  # the first token carries only part of the flag
    decoder = tok.stream_decoder()
    chunks = [decoder.push(i) for i in ids]
    assert chunks[0] == " "  # the complete space is released, the partial flag is held
    assert "".join(chunks) == " 🇯🇵"
    assert decoder.flush() == ""


def test_stream_skipping_special_tokens_equals_full_decode(tok: Qwen3Tokenizer) -> None:
    ids = tok.encode("<|im_start|>assistant\n" + "".join(MIXED_TEXTS) + "<|im_end|>")
    chunks = stream(tok.stream_decoder(skip_special_tokens=True), ids)
    assert "".join(chunks) == tok.decode(ids, skip_special_tokens=True)
    assert "<|im_end|>" not in "".join(chunks)


def test_stream_cut_inside_a_character_flushes_what_full_decode_shows(
    tok: Qwen3Tokenizer,
) -> None:
    ids = tok.encode("ok 🇯🇵")[:-2]  # stops in the middle of the first flag letter
    assert tok.decode(ids).endswith("\ufffd")
    decoder = tok.stream_decoder()
    pushed = "".join(decoder.push(i) for i in ids)
    assert "\ufffd" not in pushed
    assert pushed + decoder.flush() == tok.decode(ids)


def test_stream_of_random_ids_equals_full_decode(tok: Qwen3Tokenizer) -> None:
    """Arbitrary ids (byte fragments, special tokens, invalid UTF-8) keep the invariant."""
    rng = random.Random(1234)
    for _ in range(20):
        ids = [rng.randrange(tok.vocab_size) for _ in range(rng.randrange(1, 60))]
        assert "".join(stream(tok.stream_decoder(), ids)) == tok.decode(ids)


def test_stream_window_stays_small_on_bytes_that_never_form_a_character(
    tok: Qwen3Tokenizer,
) -> None:
    # A lone UTF-8 lead byte (0xE4 -> byte-level symbol 'ä') repeated: every decode ends in U+FFFD.
    lead_byte = tok.token_id("ä")
    assert tok.decode([lead_byte]) == "\ufffd"
    ids = [lead_byte] * 200
    decoder = tok.stream_decoder()
    most_held = 0
    chunks = []
    for i in ids:
        chunks.append(decoder.push(i))
        most_held = max(most_held, decoder.held_tokens)
    chunks.append(decoder.flush())
    assert most_held <= 17
    assert "".join(chunks) == tok.decode(ids)
    assert decoder.held_tokens == 0


def test_stream_decoder_can_be_reused_after_flush(tok: Qwen3Tokenizer) -> None:
    decoder = tok.stream_decoder()
    first = tok.encode("第一")
    second = tok.encode("👍🏽 second")
    assert "".join(stream(decoder, first)) == tok.decode(first)
    assert "".join(stream(decoder, second)) == tok.decode(second)


# -- bad input -------------------------------------------------------------------------------------


def test_missing_tokenizer_json_is_a_one_line_model_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as caught:
        Qwen3Tokenizer.from_dir(tmp_path)
    message = str(caught.value)
    assert "tokenizer.json" in message and str(tmp_path) in message
    assert "\n" not in message


def test_corrupt_tokenizer_json_is_a_one_line_model_load_error(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text('{"model": {"type": "BPE", "vocab": ')
    with pytest.raises(ModelLoadError) as caught:
        Qwen3Tokenizer.from_dir(tmp_path)
    assert "tokenizer.json" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_corrupt_tokenizer_config_is_a_one_line_model_load_error(
    tmp_path: Path, shared_dir: Path
) -> None:
    shutil.copy(shared_dir / "tokenizer.json", tmp_path / "tokenizer.json")
    (tmp_path / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(ModelLoadError) as caught:
        Qwen3Tokenizer.from_dir(tmp_path)
    assert "tokenizer_config.json" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_tokenizer_without_qwen3_chat_tokens_is_rejected(tmp_path: Path) -> None:
    folder = write_toy_tokenizer(tmp_path / "toy", ["<|endoftext|>"])
    with pytest.raises(ModelLoadError) as caught:
        Qwen3Tokenizer.from_dir(folder)
    assert "<think>" in str(caught.value) and "\n" not in str(caught.value)


def test_tokenizer_config_and_generation_config_are_optional(
    tmp_path: Path, shared_dir: Path
) -> None:
    shutil.copy(shared_dir / "tokenizer.json", tmp_path / "tokenizer.json")
    bare = Qwen3Tokenizer.from_dir(tmp_path)
    assert bare.eos_token_ids == {bare.im_end_id, bare.token_id("<|endoftext|>")}
    assert bare.pad_token_id == bare.token_id("<|endoftext|>")
