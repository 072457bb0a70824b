"""Causal decoders behind one interface, chosen by `ModelConfig.decoder`.

    decoder = build_decoder(config)
    cache = decoder.new_cache(batch_size, max_len, device, dtype)
    hidden = decoder(x, positions, cache, lengths)   # (B, T, C) -> (B, T, C)

`positions` (B, T) holds each token's absolute position, so every sequence in a batch can
be at its own place (a scheduler can batch users that started at different times).
`cache=None` runs a plain full forward pass (training). The Transformer's cache is a
preallocated `KVCache`; the LSTM's is its hidden state (`engine.lstm_decoder`). On a CPU, a
decode step (one token a row, with a cache) is the same computation with fewer operations: in C++
(`engine.native_step`) where that is built, else `engine.one_token.one_token_step`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.config import ModelConfig
from engine.native_step import native_one_token_step
from engine.one_token import one_token_step


class KVCache(nn.Module):
    """Preallocated keys and values for one attention layer: (B, H, max_len, D)."""

    def __init__(self, batch_size: int, n_heads: int, max_len: int, head_dim: int, device, dtype):
        super().__init__()
        shape = (batch_size, n_heads, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.register_buffer("v", torch.zeros(shape, device=device, dtype=dtype), persistent=False)

    def update(self, positions: torch.Tensor, k: torch.Tensor, v: torch.Tensor, length: int):
        """Write k, v (B, H, T, D) at `positions` (B, T); return the first `length` slots."""
        if k.shape[2] == 1:  # one token a row (a decode step): an indexed write, far cheaper than scatter
            rows = torch.arange(k.shape[0], device=k.device)
            self.k[rows, :, positions[:, 0]] = k[:, :, 0]  # (B, H, D) into (B, H, max_len, D)
            self.v[rows, :, positions[:, 0]] = v[:, :, 0]
        else:
            index = positions[:, None, :, None].expand_as(k)  # (B, T) -> (B, H, T, D)
            self.k.scatter_(2, index, k)
            self.v.scatter_(2, index, v)
        return self.k[:, :, :length], self.v[:, :, :length]

    def grow(self, capacity: int) -> None:
        """Room for `capacity` positions a row, keeping what the buffers hold."""
        old = self.k.shape[2]
        for name in ("k", "v"):
            buffer = getattr(self, name)
            grown = buffer.new_zeros(*buffer.shape[:2], capacity, buffer.shape[3])  # (B, H, capacity, D)
            grown[:, :, :old] = buffer
            setattr(self, name, grown)


class Rotary(nn.Module):
    """Rotary position embeddings looked up by absolute position."""

    def __init__(
        self, head_dim: int, max_len: int, theta: float, scaling: tuple[float, float, float, float] | None = None
    ):
        super().__init__()
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim)
        if scaling is not None:
            inv_freq = llama3_scaled(inv_freq, *scaling)
        angles = torch.outer(torch.arange(max_len).float(), inv_freq)  # (max_len, D/2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def tables(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin for `positions` (B, T), each (B, 1, T, D/2); computed once per forward."""
        return self.cos[positions].unsqueeze(1).to(dtype), self.sin[positions].unsqueeze(1).to(dtype)


def llama3_scaled(
    inv_freq: torch.Tensor, factor: float, low_freq_factor: float, high_freq_factor: float, original_max_len: float
) -> torch.Tensor:
    """Llama 3.1's RoPE scaling: long wavelengths slowed by `factor`, short ones kept, a smooth ramp between."""
    wavelength = 2 * math.pi / inv_freq
    smooth = (original_max_len / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor)
    ramp = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    scaled = torch.where(wavelength > original_max_len / low_freq_factor, inv_freq / factor, inv_freq)
    medium = (wavelength >= original_max_len / high_freq_factor) & (wavelength <= original_max_len / low_freq_factor)
    return torch.where(medium, ramp, scaled)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)  # (B, H, T, D) -> 2 x (B, H, T, D/2)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


@dataclass
class StepContext:
    """What every layer of one forward pass shares: positions, rotary tables, cache length and mask."""

    positions: torch.Tensor  # (B, T)
    cos: torch.Tensor  # (B, 1, T, D/2)
    sin: torch.Tensor
    length: int = 0  # cache slots in use after this step (cached forward only)
    mask: torch.Tensor | None = None  # (B, 1, T, length) True where attention is allowed


class Attention(nn.Module):
    """Causal self-attention; with n_kv_heads < n_heads, grouped-query attention (the cache holds n_kv_heads)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.kv_heads, config.head_dim
        self.qkv = nn.Linear(config.d_model, (config.n_heads + 2 * config.kv_heads) * config.head_dim, bias=False)
        self.out = nn.Linear(config.d_model, config.d_model, bias=False)
        self.dropout = config.dropout

    def forward(self, x, context: StepContext, cache: KVCache | None):
        B, T, C = x.shape
        H, KV = self.n_heads, self.n_kv_heads
        qkv = self.qkv(x).view(B, T, H + 2 * KV, self.head_dim).transpose(1, 2)  # (B, T, (H+2KV)D) -> (B, H+2KV, T, D)
        q, k = apply_rotary(qkv[:, : H + KV], context.cos, context.sin).split((H, KV), dim=1)
        v = qkv[:, H + KV :]  # q: (B, H, T, D); k, v: (B, KV, T, D)
        gqa = KV != H  # each group of H // KV query heads shares one key/value head
        if cache is None:
            y = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, enable_gqa=gqa, dropout_p=self.dropout if self.training else 0.0
            )
        else:
            k, v = cache.update(context.positions, k, v, context.length)  # (B, KV, length, D)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=context.mask, enable_gqa=gqa)
        return self.out(y.transpose(1, 2).reshape(B, T, C))  # (B, H, T, D) -> (B, T, C)


class FeedForward(nn.Module):
    """SwiGLU MLP."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        hidden = config.mlp_hidden
        self.gate_up = nn.Linear(config.d_model, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, config.d_model, bias=False)

    def forward(self, x):
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.attention_norm = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self.attention = Attention(config)
        self.ffn_norm = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self.ffn = FeedForward(config)
        self.dropout = config.dropout

    def forward(self, x, context, cache):
        attended = self.attention(self.attention_norm(x), context, cache)
        if self.dropout and self.training:
            attended = F.dropout(attended, self.dropout)
        x = x + attended
        fed = self.ffn(self.ffn_norm(x))
        if self.dropout and self.training:
            fed = F.dropout(fed, self.dropout)
        return x + fed


class TransformerCache(nn.Module):
    """One KVCache per layer, for up to `max_len` positions a row. With a smaller `capacity` the
    buffers start that long and `reserve` grows them (doubling) as rows get longer, so many short
    conversations do not hold memory for their longest possible length."""

    def __init__(self, config: ModelConfig, batch_size: int, max_len: int, device, dtype, capacity: int | None = None):
        super().__init__()
        capacity = max_len if capacity is None else max(1, min(capacity, max_len))
        self.layers = nn.ModuleList(
            KVCache(batch_size, config.kv_heads, capacity, config.head_dim, device, dtype)
            for _ in range(config.n_layers)
        )
        self.max_len = max_len

    @property
    def capacity(self) -> int:
        return self.layers[0].k.shape[2]

    def reserve(self, length: int) -> None:
        """Room for positions 0 .. length-1 in every row (at most max_len)."""
        if length <= self.capacity:
            return
        if length > self.max_len:
            raise ValueError(f"{length} positions do not fit a cache of {self.max_len}")
        capacity = min(self.max_len, max(length, 2 * self.capacity))
        for layer in self.layers:
            layer.grow(capacity)


class TransformerDecoder(nn.Module):
    """Pre-norm causal Transformer with RoPE and `scaled_dot_product_attention`."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.rotary = Rotary(config.head_dim, config.max_seq_len, config.rope_theta, config.rope_scaling)

    def new_cache(self, batch_size: int, max_len: int, device, dtype, capacity: int | None = None) -> TransformerCache:
        return TransformerCache(self.config, batch_size, min(max_len, self.config.max_seq_len), device, dtype, capacity)

    def forward(self, x, positions, cache: TransformerCache | None = None, lengths=None):
        if cache is not None and x.shape[1] == 1 and x.device.type == "cpu":
            # a decode step: in C++ where it is built (engine.native_step), else in few Python operations
            native = native_one_token_step(self, x, positions, cache)
            return native if native is not None else one_token_step(self, x, positions, cache)
        context = StepContext(positions, *self.rotary.tables(positions, x.dtype))
        if cache is not None:
            context.length = int(positions.max()) + 1
            context.mask = (torch.arange(context.length, device=x.device) <= positions[:, :, None])[:, None]
            # (B, T, length) -> (B, 1, T, length)
        for index, block in enumerate(self.blocks):
            x = block(x, context, None if cache is None else cache.layers[index])
        return x


def build_decoder(config: ModelConfig) -> nn.Module:
    if config.decoder == "lstm":
        from engine.lstm_decoder import LSTMDecoder

        return LSTMDecoder(config)
    return TransformerDecoder(config)
