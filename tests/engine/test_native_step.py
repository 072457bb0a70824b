"""engine.native_step: the C++ decode step computes what the Python step computes."""

import logging

import pytest
import torch
from tiny_models import tiny_model

import engine.native_step as native
from engine.generation import GenerationConfig, generate
from engine.one_token import one_token_step
from engine.quantize import quantize
from tests.engine.test_decoder import random_inputs
from tests.engine.test_quantize import as_q4_1


def test_the_cpp_step_builds_on_this_machine():
    assert native.load(), native.unavailable_reason()  # CI has a compiler: a fallback here would hide a regression


def steps_agree(model, cache_dtype, rows: int, tolerance: float):
    """One step of `rows` rows at different positions (0, 147, 34…), C++ against Python, on equal
    caches full of earlier keys and values."""
    decoder, config = model.decoder, model.config
    g = torch.Generator().manual_seed(rows)
    caches = [decoder.new_cache(rows, 200, "cpu", cache_dtype) for _ in range(2)]
    for python_layer, cpp_layer in zip(*(cache.layers for cache in caches)):
        python_layer.k.copy_(torch.randn(python_layer.k.shape, generator=g))
        python_layer.v.copy_(torch.randn(python_layer.v.shape, generator=g))
        cpp_layer.k, cpp_layer.v = python_layer.k.clone(), python_layer.v.clone()
    dtype = model.norm.weight.dtype
    x = torch.randn(rows, 1, config.d_model, generator=g).to(dtype)
    positions = torch.tensor([[(17 * row) % 60 + 130 * (row % 2)] for row in range(rows)])  # (B, 1); 0, 147, 34…
    with torch.inference_mode():
        expected = one_token_step(decoder, x, positions, caches[0]).float()
        got = native.native_one_token_step(decoder, x, positions, caches[1])
    assert got is not None and got.dtype == dtype and got.shape == x.shape
    assert (got.float() - expected).norm() / expected.norm() < tolerance
    for python_layer, cpp_layer in zip(*(cache.layers for cache in caches)):  # the same keys and values written
        torch.testing.assert_close(cpp_layer.k.float(), python_layer.k.float(), atol=tolerance * 10, rtol=tolerance)
        torch.testing.assert_close(cpp_layer.v.float(), python_layer.v.float(), atol=tolerance * 10, rtol=tolerance)


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_a_float_model_steps_as_in_python(kv_heads):
    model = tiny_model(d_model=64, n_heads=4, n_kv_heads=kv_heads)
    for rows in (1, 3):
        steps_agree(model, torch.float32, rows, tolerance=1e-5)


@pytest.mark.parametrize("mode", ["int4", "int8"])
def test_a_packed_model_steps_as_in_python_with_few_and_many_rows(mode):
    fast = quantize(as_q4_1(tiny_model(d_model=64, n_heads=4, n_kv_heads=2)), mode)
    kinds = {type(block.ffn.down).__name__ for block in fast.decoder.blocks}
    assert kinds == {"Int4Linear" if mode == "int4" else "Int8Linear"}
    for rows in (1, 3, 20):  # 20 rows: past the packed kernels, their dense bfloat16 weights
        steps_agree(fast, torch.bfloat16, rows, tolerance=0.02)  # bfloat16 roundings in other places


def test_an_int8_model_of_widths_not_multiples_of_16_steps_as_the_float_model():
    """72 inputs: not whole blocks of 32 for int8_rows, and PyTorch's int8 kernel gives wrong numbers (or crashes)
    when the inputs are not a multiple of 16, so such layers multiply their dequantized weights."""
    model = tiny_model(d_model=72, n_heads=4, n_kv_heads=2)
    fast = quantize(model, "int8")
    steps_agree(fast, torch.bfloat16, 3, tolerance=0.02)
    x = torch.randn(2, 1, 72, generator=torch.Generator().manual_seed(0))
    positions = torch.tensor([[0], [0]])
    with torch.inference_mode():
        expected = one_token_step(model.decoder, x, positions, model.decoder.new_cache(2, 8, "cpu", torch.float32))
        got = native.native_one_token_step(
            fast.decoder, x.bfloat16(), positions, fast.decoder.new_cache(2, 8, "cpu", torch.bfloat16)
        )
    assert (got.float() - expected).norm() / expected.norm() < 0.03


def test_greedy_replies_are_the_same_with_and_without_the_cpp_step(monkeypatch):
    model = tiny_model(d_model=64, n_heads=4, n_kv_heads=2)
    inputs = random_inputs(model.config, [12], with_media=False)
    config = GenerationConfig(max_new_tokens=40, temperature=0.0)

    def reply():
        with torch.inference_mode():
            return list(generate(model, inputs, config, stop_ids=set()))

    with_cpp = reply()
    monkeypatch.setenv("ENGINE_NATIVE_STEP", "0")
    assert native.native_one_token_step(model.decoder, None, None, None) is None  # switched off
    assert reply() == with_cpp and len(with_cpp) == 40


class Scaled(torch.nn.Module):
    """A layer the C++ step does not know (as a LoRA adapter being trained)."""

    def __init__(self, linear):
        super().__init__()
        self.linear = linear

    def forward(self, x):
        return 2 * self.linear(x)


def test_a_replaced_layer_is_seen_and_an_unknown_one_runs_in_python():
    model = tiny_model(d_model=64, n_heads=4)
    decoder = model.decoder
    x, positions = torch.randn(1, 1, 64), torch.tensor([[3]])

    def step():
        with torch.inference_mode():
            return native.native_one_token_step(decoder, x, positions, decoder.new_cache(1, 16, "cpu", torch.float32))

    before = step()
    block = decoder.blocks[1]
    replaced = torch.nn.Linear(block.ffn.down.in_features, 64, bias=True)  # with a bias, as some models have
    block.ffn.down = replaced
    after = step()
    assert not torch.allclose(before, after)
    with torch.inference_mode():
        expected = one_token_step(decoder, x, positions, decoder.new_cache(1, 16, "cpu", torch.float32))
    torch.testing.assert_close(after, expected, atol=1e-5, rtol=1e-5)

    block.ffn.down = Scaled(replaced)
    assert step() is None  # the decoder falls back to the Python step
    with torch.inference_mode():
        cache = decoder.new_cache(1, 16, "cpu", torch.float32)
        assert decoder(x, positions, cache).shape == (1, 1, 64)


def test_a_position_beyond_the_cache_is_an_error_not_a_crash():
    model = tiny_model(d_model=64, n_heads=4)
    cache = model.decoder.new_cache(1, 8, "cpu", torch.float32)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="position beyond the cache"):
        native.native_one_token_step(model.decoder, torch.randn(1, 1, 64), torch.tensor([[8]]), cache)


def test_a_machine_that_cannot_build_it_decodes_in_python(monkeypatch, tmp_path, caplog):
    broken = tmp_path / "one_token_step.cpp"
    broken.write_text("this is not C++\n")
    monkeypatch.setattr(native, "SOURCES", [broken])
    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setattr(native, "NAME", "engine_native_step_broken")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "build"))
    with caplog.at_level(logging.WARNING, logger="engine.native_step"):
        assert not native.load()
    assert "could not be built" in caplog.text and native.unavailable_reason()
    model = tiny_model(d_model=64, n_heads=4)
    with torch.inference_mode():
        cache = model.decoder.new_cache(1, 16, "cpu", torch.float32)
        assert native.native_one_token_step(model.decoder, torch.randn(1, 1, 64), torch.tensor([[0]]), cache) is None
        assert model.decoder(torch.randn(1, 1, 64), torch.tensor([[0]]), cache).shape == (1, 1, 64)
