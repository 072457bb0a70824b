"""engine.quantize: int8 and exact 4-bit linears, and the quantized model's decode step."""

import gguf
import numpy as np
import pytest
import torch
from tiny_models import tiny_model

from engine.generation import decode_one_token, prefill
from engine.quantize import Int4Linear, Int8Linear, four_bit_codes, packed_kinds, packed_linear, quantize
from tests.engine.test_decoder import prompt_part, random_inputs


def q4_1(weight: torch.Tensor) -> torch.Tensor:
    """The weight as llama.cpp's Q4_1 stores it (4-bit codes, a scale and a minimum per 32 inputs), read back."""
    kind = gguf.GGMLQuantizationType.Q4_1
    stored = gguf.quants.quantize(weight.float().numpy(), kind)
    return torch.from_numpy(np.asarray(gguf.quants.dequantize(stored, kind), dtype=np.float32).copy())


def as_q4_1(model):
    """The model with every decoder linear rounded to Q4_1, as a GGUF of it would load."""
    with torch.no_grad():
        for block in model.decoder.blocks:
            for linear in (block.attention.qkv, block.attention.out, block.ffn.gate_up, block.ffn.down):
                linear.weight.copy_(q4_1(linear.weight))
    return model


def test_a_q4_1_weight_is_kept_as_its_own_codes_and_a_float_weight_is_not_rounded_to_4_bits():
    g = torch.Generator().manual_seed(0)
    stored = q4_1(torch.randn(96, 128, generator=g))
    codes = four_bit_codes(stored)
    assert codes is not None
    linear = torch.nn.Linear(128, 96, bias=False)
    with torch.no_grad():
        linear.weight.copy_(stored)
    packed = packed_linear(linear, "int4")
    assert isinstance(packed, Int4Linear)
    torch.testing.assert_close(packed.dense.float(), stored, atol=0, rtol=2**-8)  # the grid, in bfloat16
    x = torch.randn(3, 128, generator=g)
    expected = x @ stored.T
    for rows in (x[:1], x):  # the 4-bit kernel
        got = packed.rows(rows).float()
        torch.testing.assert_close(got, expected[: len(rows)], atol=0.05 * expected.abs().max().item(), rtol=0.02)
    many = torch.randn(Int4Linear.max_rows + 1, 128, generator=g)  # past the 4-bit kernel: the bfloat16 matmul
    expected = many @ stored.T
    torch.testing.assert_close(packed.rows(many).float(), expected, atol=0.05 * expected.abs().max().item(), rtol=0.02)

    floats = torch.nn.Linear(128, 96, bias=False)  # random floats: no 4-bit grid
    assert four_bit_codes(floats.weight.detach()) is None
    assert isinstance(packed_linear(floats, "int4"), Int8Linear)
    assert isinstance(packed_linear(torch.nn.Linear(100, 8), "int4"), Int8Linear)  # inputs not a multiple of 32


def test_int4_quantizes_exactly_the_4_bit_layers_and_decodes_like_the_full_precision_model():
    model = as_q4_1(tiny_model(d_model=64, n_heads=4))
    fast = quantize(model, "int4")
    assert packed_kinds(fast) == {"Int4Linear": 4 * model.config.n_layers, "Int8Head": 1}  # the head is int8
    assert isinstance(model.decoder.blocks[0].attention.qkv, torch.nn.Linear)  # the original is untouched
    assert packed_kinds(quantize(model, "int8")) == {"Int8Linear": 4 * model.config.n_layers, "Int8Head": 1}
    adapted = tiny_model(d_model=64, n_heads=4)  # float weights (merged adapters): int8, never 4-bit
    assert packed_kinds(quantize(adapted, "int4")) == {"Int8Linear": 4 * model.config.n_layers, "Int8Head": 1}

    inputs = random_inputs(model.config, [40, 33], with_media=False)  # two rows at their own positions
    prompt = prompt_part(inputs, 30)
    with torch.inference_mode():
        reference = model.logits(model(inputs)).float()  # full precision, full forward
        cache = fast.new_cache(2, 64)
        prefill(fast, prompt, cache)
        for position in range(30, 33):
            token, at = inputs.ids[:, position], torch.full((2,), position)
            logits = decode_one_token(fast, token, at, cache)  # (2, V)
            expected = reference[:, position]
            assert (logits - expected).norm() / expected.norm() < 0.05
            assert torch.equal(logits.argmax(-1), expected.argmax(-1))


def test_an_unknown_mode_is_refused_by_name():
    with pytest.raises(ValueError, match="int8, int4"):
        quantize(tiny_model(), "int3")


@pytest.mark.parametrize("cpp", ["1", "0"])  # re-scored by engine_native.int8_logits, or in Python
def test_the_head_scores_near_ties_in_float32(cpp, monkeypatch):
    """Logits 25.25 and 25.30 are one bfloat16 value (25.25): the int8 kernel alone ties them."""
    monkeypatch.setenv("ENGINE_NATIVE_STEP", cpp)
    from engine.quantize import Int8Head

    head = torch.nn.Linear(64, 5, bias=False)
    with torch.no_grad():
        head.weight.uniform_(-0.1, 0.1)
        head.weight[3] = 25.25 / 64
        head.weight[4] = 25.30 / 64  # every input 1: logit 25.30, the best by 0.05
    x = torch.ones(1, 64)
    assert Int8Linear(head).rows(x).float().argmax(-1).item() == 3  # tied in bfloat16: the first wins
    logits = Int8Head(head).rows(x)
    assert logits.dtype == torch.float32 and logits.argmax(-1).item() == 4
    torch.testing.assert_close(logits[0, 3:], torch.tensor([25.25, 25.30]), atol=1e-4, rtol=0)
