"""Cached decoding with grouped-query attention equals a full forward pass."""

from __future__ import annotations

import torch

from engine.config import preset
from engine.fusion import ModelInputs
from engine.generation import generate
from engine.model import MultimodalModel
from engine.types import GenerationConfig


def gqa_model(**overrides) -> MultimodalModel:
    torch.manual_seed(0)
    config = preset(
        "tiny",
        n_heads=4,
        n_kv_heads=2,
        ffn_hidden=96,
        norm_eps=1e-5,
        tie_embeddings=False,
        rope_theta=100000.0,
        **overrides,
    )
    return MultimodalModel(config).eval()


def text_inputs(ids: list[int]) -> ModelInputs:
    tensor = torch.tensor([ids])
    return ModelInputs(
        ids=tensor,
        positions=torch.arange(len(ids))[None],
        lengths=torch.tensor([len(ids)]),
        media_kind=torch.zeros_like(tensor),
    )


def test_the_cache_holds_only_the_kv_heads():
    model = gqa_model()
    cache = model.new_cache(1, 32)
    assert cache.layers[0].k.shape == (1, 2, 32, model.config.head_dim)
    assert model.decoder.blocks[0].attention.qkv.weight.shape == ((4 + 2 * 2) * 16, 64)


def test_gqa_matches_repeated_kv_heads():
    """enable_gqa=True is the same as giving each query head its group's key/value head."""
    q, k, v = torch.randn(2, 6, 5, 8), torch.randn(2, 3, 5, 8), torch.randn(2, 3, 5, 8)
    expected = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1), is_causal=True
    )
    got = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    torch.testing.assert_close(got, expected)


def test_cached_greedy_decoding_equals_full_forward():
    model = gqa_model()
    prompt = [5, 17, 42, 9, 101, 7]
    config = GenerationConfig(max_new_tokens=12, temperature=0)
    tokens = [int(t[0]) for t in generate(model, text_inputs(prompt), config, stop_ids=set())]
    assert len(tokens) == 12
    # full forward over prompt + reply: the argmax at each step is the next token chosen by the cached loop
    sequence = prompt + tokens
    with torch.no_grad():
        logits = model.logits(model(text_inputs(sequence)))[0]  # (T, V)
    assert logits[len(prompt) - 1 : -1].argmax(-1).tolist() == tokens
    # and the cached step logits are close to the full forward's
    cache = model.new_cache(1, len(sequence))
    with torch.no_grad():
        model(text_inputs(prompt), cache)
        for i, token in enumerate(tokens[:-1]):
            position = torch.tensor([[len(prompt) + i]])
            step = model.step(torch.tensor([[token]]), position, cache)[0]
            torch.testing.assert_close(step, logits[len(prompt) + i], atol=1e-5, rtol=1e-5)
