"""A decode step on a CPU: one new token a row through the Transformer with as few tensor
operations as the math needs.

    hidden = one_token_step(decoder, x, positions, cache)   # x (B, 1, C) -> (B, 1, C)

A 135M model's step on two cores runs ~1,000 small operations, and PyTorch spends a few
microseconds dispatching each: that, not arithmetic, was half of a step (`torch.profiler`).
This path is the same computation as `TransformerDecoder.forward` with a cache, written for one
token: the residual stream and norms in float32 (no casts around each norm), the packed
linears called on 2-D rows, the rotation of queries and keys done once for both, the cache
written by `KVCache.update`'s indexed write, and attention as two batched matmuls over each group of query heads sharing
a key/value head (SDPA's CPU kernel is built for long queries and was several times slower).
A GPU keeps the generic path (its kernels handle one query well; launches are what it costs).
`engine.native_step` runs this same step in C++ where it is built; this one is its reference (the
tests hold the two together) and what runs where no compiler is found.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def linear_rows(linear: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """x (M, K) -> (M, N) through a packed linear (engine.quantize), an nn.Linear in its own dtype,
    or any other module (a LoRA adapter being trained)."""
    rows = getattr(linear, "rows", None)
    if rows is not None:
        return rows(x)
    if type(linear) is nn.Linear:
        return F.linear(x.to(linear.weight.dtype), linear.weight, linear.bias)
    return linear(x)


def rms_norm(x: torch.Tensor, norm: nn.RMSNorm) -> torch.Tensor:
    """x (M, C) float32 -> float32, with the norm's weight in float32."""
    return F.rms_norm(x, norm.normalized_shape, norm.weight.float(), norm.eps)


def one_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, masked: torch.Tensor | None):
    """Attention of one new token a row over the cache, in float32: q (B, H, D), k and v
    (B, KV, L, D), `masked` (B, 1, 1, L) True where a row may not look, or None -> (B, H * D).
    Each group of H // KV query heads shares one key/value head (no copy of k, v per head)."""
    B, H, D = q.shape
    KV = k.shape[1]
    grouped = q.reshape(B, KV, H // KV, D) * D**-0.5  # (B, H, D) -> (B, KV, G, D): head h reads k, v head h // G
    scores = torch.matmul(grouped, k.float().transpose(-1, -2))  # (B, KV, G, L)
    if masked is not None:
        scores.masked_fill_(masked, float("-inf"))
    y = torch.matmul(scores.softmax(dim=-1), v.float())  # (B, KV, G, D)
    return y.reshape(B, H * D)


@torch.inference_mode()
def one_token_step(decoder: nn.Module, x: torch.Tensor, positions: torch.Tensor, cache: nn.Module) -> torch.Tensor:
    """The decoder on one token a row: x (B, 1, C) at `positions` (B, 1), each row writing its
    keys and values at its position of `cache` (row b of the cache is row b of the batch)."""
    config = decoder.config
    B, _, C = x.shape
    H, KV, D = config.n_heads, config.kv_heads, config.head_dim
    half = D // 2
    at = positions[:, 0]  # (B,)
    length = int(at.max()) + 1
    cos, sin = decoder.rotary.cos[at][:, None], decoder.rotary.sin[at][:, None]  # (B, 1, D/2), float32
    # a row may not read the slots after its own position (another row's longer past); one row reads all
    masked = None if B == 1 else (torch.arange(length, device=x.device) > at[:, None])[:, None, None]  # (B, 1, 1, L)
    h = x[:, 0].float()  # (B, 1, C) -> (B, C): the residual stream
    for block, layer in zip(decoder.blocks, cache.layers):
        attention, ffn = block.attention, block.ffn
        qkv = linear_rows(attention.qkv, rms_norm(h, block.attention_norm)).float().view(B, H + 2 * KV, D)
        first, second = qkv[:, : H + KV, :half], qkv[:, : H + KV, half:]  # queries and keys, (B, H+KV, D/2) each
        qk = torch.cat((first * cos - second * sin, second * cos + first * sin), dim=-1)  # rotated, (B, H+KV, D)
        k, v = layer.update(  # (B, KV, D) -> (B, KV, 1, D) written at each row's position; (B, KV, length, D) back
            positions, qk[:, H:, None].to(layer.k.dtype), qkv[:, H + KV :, None].to(layer.v.dtype), length
        )
        y = one_query_attention(qk[:, :H], k, v, masked)  # (B, C)
        h = h + linear_rows(attention.out, y)
        gate, up = linear_rows(ffn.gate_up, rms_norm(h, block.ffn_norm)).chunk(2, dim=-1)
        h = h + linear_rows(ffn.down, F.silu(gate) * up)
    return h[:, None].to(x.dtype)  # (B, C) -> (B, 1, C)
