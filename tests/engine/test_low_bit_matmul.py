"""engine/csrc/low_bit_matmul.cpp: int8 weights by activations rounded to int8 per block of 32, in C++."""

import pytest
import torch

import engine.native_step as native
from engine.quantize import Int8Head, Int8Linear

pytestmark = pytest.mark.skipif(not native.fast_kernels(), reason="needs the C++ code built on a CPU with AVX2")


def block_rounded(x: torch.Tensor) -> torch.Tensor:
    """x (M, K) as the kernel sees it: each block of 32 inputs rounded to int8 steps of its largest / 127."""
    M, K = x.shape
    blocks = x.float().reshape(M, K // 32, 32)  # (M, K) -> (M, G, 32)
    scale = blocks.abs().amax(dim=-1, keepdim=True) / 127  # (M, G, 1)
    codes = torch.round(blocks / torch.where(scale > 0, scale, torch.ones_like(scale)))
    return (codes * scale).reshape(M, K)


def int8_weights(N: int, K: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    linear = torch.nn.Linear(K, N, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(N, K, generator=g) * torch.rand(N, 1, generator=g))  # rows of unlike size
    packed = Int8Linear(linear, keep_bf16=False)
    return packed, packed.int8_weight.float() * packed.scales.float()[:, None]  # (N, K) as it multiplies


@pytest.mark.parametrize("rows", [1, 3, 4, 6, 9])  # tiles of 4 rows and what is left over
@pytest.mark.parametrize("N, K", [(37, 64), (200, 96), (16, 576)])  # odd counts of weight rows and of blocks
def test_int8_rows_is_the_matmul_of_the_block_rounded_activations(rows, N, K):
    packed, weight = int8_weights(N, K, seed=rows * N)
    x = torch.randn(rows, K, generator=torch.Generator().manual_seed(K)) * 3
    x[0, :32] = 0  # an all-zero block: its scale is 0, not a division by 0
    got = torch.ops.engine_native.int8_rows(x, packed.int8_weight, packed.scales)
    assert got.dtype == torch.float32 and got.shape == (rows, N)
    torch.testing.assert_close(got, block_rounded(x) @ weight.T, atol=1e-4, rtol=1e-4)
    exact = x @ weight.T
    assert (got - exact).norm() / exact.norm() < 0.01  # what rounding the activations costs


def test_a_packed_linear_and_the_head_use_it_and_agree_with_pytorchs_kernel(monkeypatch):
    packed, weight = int8_weights(300, 128, seed=1)
    x = torch.randn(2, 128, generator=torch.Generator().manual_seed(2))
    fast = packed.exact_rows(x)
    assert fast.dtype == torch.float32  # from int8_rows; PyTorch's kernel gives bfloat16
    monkeypatch.setenv("ENGINE_NATIVE_STEP", "0")  # the C++ code off: PyTorch's kernel
    slow = packed.exact_rows(x)
    assert slow.dtype == torch.bfloat16
    assert (fast - slow.float()).norm() / slow.float().norm() < 0.01
    monkeypatch.delenv("ENGINE_NATIVE_STEP")
    head = torch.nn.Linear(128, 300, bias=False)
    head.weight.data = weight
    packed_head = Int8Head(head)
    many = torch.randn(packed_head.max_rows + 1, 128, generator=torch.Generator().manual_seed(3))  # bfloat16 matmul
    for rows in (x, many):
        logits = packed_head.rows(rows)
        assert logits.dtype == torch.float32
        assert torch.equal(logits.argmax(-1), (rows @ weight.T).argmax(-1))  # the best token re-scored in float32


def test_inputs_it_cannot_take_are_errors_and_such_a_layer_still_multiplies(monkeypatch):
    packed, _ = int8_weights(8, 64, seed=3)
    with pytest.raises(RuntimeError, match="multiple of 32"):
        torch.ops.engine_native.int8_rows(torch.randn(1, 48), packed.int8_weight[:, :48].contiguous(), packed.scales)
    with pytest.raises(RuntimeError, match="floats"):
        torch.ops.engine_native.int8_rows(torch.randn(1, 32), packed.int8_weight, packed.scales)  # 32 != 64 inputs
    with pytest.raises(RuntimeError, match="bfloat16"):
        torch.ops.engine_native.int8_rows(torch.randn(1, 64), packed.int8_weight, packed.scales.float())
    # not whole blocks of 32; and PyTorch's kernel needs a multiple of 16 (100: wrong numbers or a crash)
    for inputs in (100, 48):
        odd, weight = int8_weights(8, inputs, seed=inputs)
        x = torch.randn(2, inputs)
        for native_on in ("1", "0"):
            monkeypatch.setenv("ENGINE_NATIVE_STEP", native_on)
            y = odd.exact_rows(x)
            assert y.dtype == torch.bfloat16 and y.shape == (2, 8)  # not int8_rows
            torch.testing.assert_close(y.float(), x @ weight.T, atol=0.1, rtol=0.02)
