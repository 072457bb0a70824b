"""A faster decode step: weight-only int8 linears with bfloat16 activations (as gpt-fast does).

    fast = quantize_int8(model)            # a copy: decoder and lm_head linears int8, the rest bfloat16
    picked = fast_decode_mode(device)      # "int8" on a CPU, "bf16" on a GPU (what load_backend uses)

Each Linear of the decoder (attention, SwiGLU MLP) and the output head keeps an int8 weight
and one bfloat16 scale per output channel; `torch._weight_int8pack_mm` multiplies. A token's
step reads a quarter of the fp32 weights' bytes, which is what bounds decoding on a CPU. For
larger batches (a prefill, a full continuous batch) the same layer runs a bfloat16 matmul of the
dequantized weight when that is faster (`INT8_MAX_ROWS`). The quality cost is measured by
`python -m lab.quant_eval` (held-out perplexity and factual QA against fp32); the embeddings, norms
and media encoders stay bfloat16.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from engine.model import MultimodalModel

# rows (batch x tokens) up to which the int8 kernel beats a bfloat16 matmul on this kind of CPU
INT8_MAX_ROWS = 4


class Int8Linear(nn.Module):
    """y = x W^T with W stored as int8 (N, K) and a scale per output row; x in bfloat16."""

    def __init__(self, linear: nn.Linear, keep_bf16: bool = True):
        super().__init__()
        weight = linear.weight.detach().float()  # (N, K)
        scales = weight.abs().amax(dim=1).clamp(min=1e-8) / 127.0  # (N,)
        quantized = torch.round(weight / scales[:, None]).clamp(-128, 127).to(torch.int8)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("int8_weight", quantized, persistent=False)
        self.register_buffer("scales", scales.to(torch.bfloat16), persistent=False)
        # the dequantized weight in bfloat16, for many rows at once (a prefill, a large batch)
        dense = (quantized.float() * scales[:, None]).to(torch.bfloat16) if keep_bf16 else None
        self.register_buffer("dense", dense, persistent=False)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().to(torch.bfloat16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, shape[-1]).to(torch.bfloat16)  # (..., K) -> (M, K)
        if self.dense is not None and (rows.shape[0] > INT8_MAX_ROWS or rows.device.type != "cpu"):
            y = F.linear(rows, self.dense)
        else:
            y = torch._weight_int8pack_mm(rows, self.int8_weight, self.scales)  # (M, N)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features)


def quantize_int8(model: MultimodalModel, keep_bf16: bool = True) -> MultimodalModel:
    """A bfloat16 copy of `model` whose decoder and output head linears are int8 (the original is untouched)."""
    fast = copy.deepcopy(model).to(torch.bfloat16)
    for block in fast.decoder.blocks:
        for owner, name in (
            (block.attention, "qkv"),
            (block.attention, "out"),
            (block.ffn, "gate_up"),
            (block.ffn, "down"),
        ):
            setattr(owner, name, Int8Linear(getattr(owner, name), keep_bf16))
    fast.lm_head = Int8Linear(fast.lm_head, keep_bf16)  # its own int8 copy; the embeddings stay bfloat16
    fast.config = model.config
    return fast.eval()


def fast_decode_mode(device: torch.device | str) -> str:
    """The decode path picked per device: "int8" weights on a CPU, "bf16" on a GPU (its default dtype)."""
    return "int8" if torch.device(device).type == "cpu" else "bf16"
