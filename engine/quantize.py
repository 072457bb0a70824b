"""A faster decode step: low-bit weights with bfloat16 activations (as gpt-fast does).

    fast = quantize(model, "int4")         # a copy: decoder linears 4-bit where exact, else int8
    fast = quantize(model, "int8")         # a copy: decoder and head linears int8
    picked = fast_decode_mode(device)      # "int4" on a CPU, "bf16" on a GPU (what load_backend uses)

"int8": each Linear of the decoder (attention, SwiGLU MLP) and the output head keeps an int8
weight and one bfloat16 scale per output channel. Where the C++ code is built and the CPU has AVX2
(`engine.native_step.fast_kernels`), `torch.ops.engine_native.int8_rows` multiplies, with the
activations rounded to int8 per block of 32 inputs as llama.cpp does (`engine/csrc/low_bit_matmul.cpp`:
SmolLM2's head on one core in ~1.06 ms against 1.6-2.0 ms for PyTorch's kernel on two, its decoder
layers about even); elsewhere `torch._weight_int8pack_mm`, with bfloat16 activations.

"int4": a decoder Linear whose weights already are 4-bit codes, a scale and an offset per group
of 32 inputs (what llama.cpp's Q4_1 stores, so every Q4_1 GGUF layer), keeps exactly those codes
and `torch._weight_int4pack_mm_for_cpu` multiplies: half the bytes of int8 and no rounding
beyond the file's own. Any other weight (a layer with merged LoRA adapters, a float checkpoint)
is int8 as above, never rounded to 4 bits. The output head stays int8, its logits float32
(`Int8Head`).

A token's step reads the weights once, which is what bounds decoding on a CPU. For many rows at
once (a prefill, a large batch) a layer runs a bfloat16 matmul of the dequantized weight when that
is faster (`max_rows`). The quality cost is measured by `python -m lab.quant_eval` (held-out
perplexity and factual QA against fp32); the embeddings, norms and media encoders stay bfloat16.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from engine.model import MultimodalModel

MODES = ("int8", "int4")
GROUP = 32  # inputs sharing one 4-bit scale and offset (llama.cpp's Q4_1 block)


class PackedLinear(nn.Module):
    """y = x W^T with W stored packed; x in bfloat16. Subclasses set `max_rows` and `_packed_mm`."""

    max_rows = 4  # rows (batch x tokens) up to which the packed kernel beats a bfloat16 matmul

    def __init__(self, linear: nn.Linear, dense: torch.Tensor | None):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        # the dequantized weight in bfloat16, for many rows at once (a prefill, a large batch)
        self.register_buffer("dense", None if dense is None else dense.to(torch.bfloat16), persistent=False)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().to(torch.bfloat16))

    def _packed_mm(self, rows: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def exact_rows(self, x: torch.Tensor) -> torch.Tensor:
        """x (M, K) in any float dtype -> (M, N) as the kernel gives it: float32 from the C++ int8
        kernel (`engine.native_step.fast_kernels`), else bfloat16."""
        if self.dense is not None and (x.shape[0] > self.max_rows or x.device.type != "cpu"):
            y = F.linear(x.to(torch.bfloat16), self.dense)
        else:
            y = self._packed_mm(x)  # (M, N)
        return y if self.bias is None else y + self.bias

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """x (M, K) in any float dtype -> (M, N) bfloat16."""
        return self.exact_rows(x).to(torch.bfloat16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = self.rows(x.reshape(-1, shape[-1]))  # (..., K) -> (M, K) -> (M, N)
        return y.reshape(*shape[:-1], self.out_features)


class Int8Linear(PackedLinear):
    """An int8 weight (N, K) and one bfloat16 scale per output row."""

    def __init__(self, linear: nn.Linear, keep_bf16: bool = True):
        weight = linear.weight.detach().float()  # (N, K)
        scales = weight.abs().amax(dim=1).clamp(min=1e-8) / 127.0  # (N,)
        quantized = torch.round(weight / scales[:, None]).clamp(-128, 127).to(torch.int8)
        super().__init__(linear, quantized.float() * scales[:, None] if keep_bf16 else None)
        self.register_buffer("int8_weight", quantized, persistent=False)
        self.register_buffer("scales", scales.to(torch.bfloat16), persistent=False)

    def _in_cpp(self, rows: torch.Tensor) -> bool:
        """Whether `rows` go to the C++ int8 kernel (a CPU with AVX2, whole blocks of 32 inputs)."""
        from engine.native_step import fast_kernels

        return rows.device.type == "cpu" and self.in_features % GROUP == 0 and fast_kernels()

    def _packed_mm(self, rows: torch.Tensor) -> torch.Tensor:
        if self._in_cpp(rows):
            return torch.ops.engine_native.int8_rows(rows, self.int8_weight, self.scales)  # float32
        # PyTorch's CPU kernel reads 16 inputs at a time: other widths give wrong numbers, or a crash
        if rows.device.type == "cpu" and self.in_features % 16:
            return F.linear(rows.to(torch.bfloat16), self.int8_weight.to(torch.bfloat16) * self.scales[:, None])
        return torch._weight_int8pack_mm(rows.to(torch.bfloat16), self.int8_weight, self.scales)


class Int8Head(Int8Linear):
    """The output head: int8 as Int8Linear, with float32 logits. The kernel's bfloat16 logits are
    0.125 apart around 25, which made near-ties of greedy decoding ties (SmolLM2 answered "What is
    the capital of France?" with "L'Étoile…" where float32 says "The capital…", 25.33 against
    25.24), so the tokens within rounding of each row's best are scored again in float32."""

    def __init__(self, linear: nn.Linear, keep_bf16: bool = True):
        super().__init__(linear, keep_bf16)
        weight = linear.weight.detach().float()
        self.register_buffer("float_scales", weight.abs().amax(dim=1).clamp(min=1e-8) / 127.0, persistent=False)

    NEAR_RELATIVE, NEAR_ABSOLUTE = 2**-6, 1e-3  # four bfloat16 rounding steps of the best, and a little

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """x (M, K) -> float32 logits (M, V)."""
        packed = self.dense is None or x.shape[0] <= self.max_rows
        if packed and self.bias is None and self._in_cpp(x):
            return torch.ops.engine_native.int8_logits(  # the same, in one C++ call
                x, self.int8_weight, self.scales, self.float_scales, self.NEAR_RELATIVE, self.NEAR_ABSOLUTE
            )
        logits = self.exact_rows(x).float()
        best = logits.max(dim=-1, keepdim=True).values  # (M, 1)
        near = logits >= best - best.abs() * self.NEAR_RELATIVE - self.NEAR_ABSOLUTE
        row, token = near.nonzero(as_tuple=True)  # (n,) each
        weights = self.int8_weight[token].float() * self.float_scales[token, None]  # (n, K)
        exact = (x.float()[row] * weights).sum(dim=-1)  # (n,)
        logits[row, token] = exact if self.bias is None else exact + self.bias[token].float()
        return logits


def four_bit_codes(weight: torch.Tensor, tolerance: float = 1e-3):
    """(codes (N, K) int32 in 0..15, scales (N, K/GROUP), offsets (N, K/GROUP)) with
    weight == offset + code * scale for each group of GROUP inputs, or None when the weight is
    not such a grid (beyond `tolerance` of a step): min and max of a group give its grid."""
    N, K = weight.shape
    if K % GROUP:
        return None
    groups = weight.float().reshape(N, K // GROUP, GROUP)  # (N, K) -> (N, G, GROUP)
    low, high = groups.amin(dim=-1), groups.amax(dim=-1)  # (N, G)
    scales = (high - low) / 15
    steps = torch.where(scales > 0, scales, torch.ones_like(scales))
    codes = torch.round((groups - low[..., None]) / steps[..., None]).clamp(0, 15)
    error = (codes * scales[..., None] + low[..., None] - groups).abs() / steps[..., None]
    if error.max() > tolerance:
        return None
    return codes.reshape(N, K).to(torch.int32), scales, low


class Int4Linear(PackedLinear):
    """4-bit codes packed for `torch._weight_int4pack_mm_for_cpu`, with a bfloat16 scale and
    offset per group of 32 inputs: w = (code - 8) * scale + (offset + 8 * scale)."""

    max_rows = 16  # measured: 4-bit beats a bfloat16 matmul up to 16 rows on 2 cores

    def __init__(self, linear: nn.Linear, codes, keep_bf16: bool = True):
        codes, scales, offsets = codes
        dense = (codes.reshape(*scales.shape, GROUP) * scales[..., None] + offsets[..., None]).flatten(1)
        super().__init__(linear, dense if keep_bf16 else None)
        self.register_buffer("packed", torch._convert_weight_to_int4pack_for_cpu(codes, 1), persistent=False)
        middle = offsets + 8 * scales  # the kernel reads codes as (code - 8)
        scales_and_zeros = torch.stack([scales, middle], dim=-1).transpose(0, 1)  # (N, G, 2) -> (G, N, 2)
        self.register_buffer("scales_and_zeros", scales_and_zeros.contiguous().to(torch.bfloat16), persistent=False)

    def _packed_mm(self, rows: torch.Tensor) -> torch.Tensor:
        return torch._weight_int4pack_mm_for_cpu(rows.to(torch.bfloat16), self.packed, GROUP, self.scales_and_zeros)


def packed_linear(linear: nn.Linear, mode: str, keep_bf16: bool = True) -> PackedLinear:
    """`linear` as int8, or (mode "int4") as its exact 4-bit codes when it has them."""
    on_cpu = linear.weight.device.type == "cpu"  # the 4-bit kernel is a CPU one
    codes = four_bit_codes(linear.weight.detach()) if mode == "int4" and on_cpu else None
    return Int4Linear(linear, codes, keep_bf16) if codes is not None else Int8Linear(linear, keep_bf16)


def quantize(model: MultimodalModel, mode: str = "int8", keep_bf16: bool = True) -> MultimodalModel:
    """A bfloat16 copy of `model` whose decoder linears are packed by `mode` ("int8" or "int4")
    and whose output head is int8 (the original is untouched)."""
    if mode not in MODES:
        raise ValueError(f"quantize mode must be one of {', '.join(MODES)}, not {mode!r}")
    fast = copy.deepcopy(model)
    # from the copy's full-precision weights, before bfloat16 rounds the 4-bit grids
    for block in fast.decoder.blocks:
        for owner, name in (
            (block.attention, "qkv"),
            (block.attention, "out"),
            (block.ffn, "gate_up"),
            (block.ffn, "down"),
        ):
            setattr(owner, name, packed_linear(getattr(owner, name), mode, keep_bf16))
    fast = fast.to(torch.bfloat16)  # the packed buffers are integers: .to leaves them as they are
    fast.lm_head = Int8Head(model.lm_head, keep_bf16)  # its own int8 copy; the embeddings stay bfloat16
    fast.config = model.config
    return fast.eval()


def packed_kinds(model: nn.Module) -> dict[str, int]:
    """How many linears of each packed kind `model` holds, e.g. {"Int4Linear": 120, "Int8Linear": 1}."""
    kinds: dict[str, int] = {}
    for module in model.modules():
        if isinstance(module, PackedLinear):
            kinds[type(module).__name__] = kinds.get(type(module).__name__, 0) + 1
    return kinds


def fast_decode_mode(device: torch.device | str) -> str:
    """The decode path picked per device: "int4" weights on a CPU, "bf16" on a GPU (its default dtype)."""
    return "int4" if torch.device(device).type == "cpu" else "bf16"
