"""The converted-weights cache: used on the second load, keyed by the GGUF file's sha256."""

from __future__ import annotations

import pytest
import torch

from engine.llm.gguf import CACHE_VERSION, file_sha256, load_gguf
from tests.engine.llm.conftest import tiny_llama_folder, tiny_llama_gguf


def logits(lm) -> torch.Tensor:
    with torch.no_grad():
        return lm.model.logits(lm.model(lm.inputs([1, 5, 9, 33, 2])))


def test_second_load_comes_from_the_cache(tmp_path):
    path = tiny_llama_gguf(tmp_path, tiny_llama_folder(tmp_path, tie=False))
    cache = tmp_path / "cache"
    first = load_gguf(path, device="cpu", cache_dir=cache)
    entry = cache / f"{file_sha256(path)}-v{CACHE_VERSION}"
    assert not first.from_cache
    assert sorted(p.name for p in entry.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert not [p for p in cache.iterdir() if p.name.startswith(".partial-")]
    second = load_gguf(path, device="cpu", cache_dir=cache)
    assert second.from_cache  # the cache-hit path: no GGUF reading, no dequantizing
    assert second.model.config == first.model.config
    assert torch.equal(logits(second), logits(first))
    messages = [{"role": "user", "content": "Hello, how are you today?"}]
    assert second.tokenizer.chat_ids(messages) == first.tokenizer.chat_ids(messages)
    assert second.tokenizer.stop_ids == first.tokenizer.stop_ids


def test_a_changed_gguf_is_not_served_from_the_old_cache(tmp_path):
    cache = tmp_path / "cache"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    path = tiny_llama_gguf(tmp_path / "a", tiny_llama_folder(tmp_path / "a", tie=True, seed=0))
    old = load_gguf(path, device="cpu", cache_dir=cache)
    # the same file name with other weights (a new release of the model, say)
    path.write_bytes(tiny_llama_gguf(tmp_path / "b", tiny_llama_folder(tmp_path / "b", tie=True, seed=1)).read_bytes())
    new = load_gguf(path, device="cpu", cache_dir=cache)
    assert not new.from_cache
    assert not torch.allclose(logits(new), logits(old))
    assert len(list(cache.iterdir())) == 2
    assert load_gguf(path, device="cpu", cache_dir=cache).from_cache


def test_a_damaged_cache_is_converted_again(tmp_path):
    path = tiny_llama_gguf(tmp_path, tiny_llama_folder(tmp_path, tie=True))
    cache = tmp_path / "cache"
    first = load_gguf(path, device="cpu", cache_dir=cache)
    weights = cache / f"{file_sha256(path)}-v{CACHE_VERSION}" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.warns(UserWarning, match="Ignoring the damaged cache"):
        again = load_gguf(path, device="cpu", cache_dir=cache)
    assert not again.from_cache and torch.equal(logits(again), logits(first))
    assert load_gguf(path, device="cpu", cache_dir=cache).from_cache
