"""Causal decoders behind one interface, chosen by `ModelConfig.decoder`.

    decoder = build_decoder(config)
    cache = decoder.new_cache(batch_size, max_len, device, dtype)
    hidden = decoder(x, positions, cache, lengths)   # (B, T, C) -> (B, T, C)

`positions` (B, T) holds each token's absolute position, so every sequence in a batch can
be at its own place (a scheduler can batch users that started at different times).
`cache=None` runs a plain full forward pass (training). The Transformer's cache is a
preallocated `KVCache`; the LSTM's is its hidden state (`engine.lstm_decoder`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.config import ModelConfig


class KVCache(nn.Module):
    """Preallocated keys and values for one attention layer: (B, H, max_len, D)."""

    def __init__(self, batch_size: int, n_heads: int, max_len: int, head_dim: int, device, dtype):
        super().__init__()
        shape = (batch_size, n_heads, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.register_buffer("v", torch.zeros(shape, device=device, dtype=dtype), persistent=False)

    def update(self, positions: torch.Tensor, k: torch.Tensor, v: torch.Tensor, length: int):
        """Write k, v (B, H, T, D) at `positions` (B, T); return the first `length` slots."""
        if k.shape[2] == 1:  # decode step: one slot per sequence
            batch = torch.arange(k.shape[0], device=k.device)
            self.k[batch, :, positions[:, 0]] = k[:, :, 0]
            self.v[batch, :, positions[:, 0]] = v[:, :, 0]
        else:
            index = positions[:, None, :, None].expand_as(k)  # (B, T) -> (B, H, T, D)
            self.k.scatter_(2, index, k)
            self.v.scatter_(2, index, v)
        return self.k[:, :, :length], self.v[:, :, :length]


class Rotary(nn.Module):
    """Rotary position embeddings looked up by absolute position."""

    def __init__(self, head_dim: int, max_len: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim)
        angles = torch.outer(torch.arange(max_len).float(), inv_freq)  # (max_len, D/2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        cos = self.cos[positions].unsqueeze(1).to(x.dtype)  # (B, T) -> (B, 1, T, D/2)
        sin = self.sin[positions].unsqueeze(1).to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)  # (B, H, T, D) -> 2 x (B, H, T, D/2)
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_heads, self.head_dim = config.n_heads, config.head_dim
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.out = nn.Linear(config.d_model, config.d_model, bias=False)
        self.dropout = config.dropout

    def forward(self, x, positions, rotary: Rotary, cache: KVCache | None):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=-1)
        q, k, v = (t.view(B, T, self.n_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
        q, k = rotary(q, positions), rotary(k, positions)
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                               dropout_p=self.dropout if self.training else 0.0)
        else:
            length = int(positions.max()) + 1
            k, v = cache.update(positions, k, v, length)  # (B, H, length, D)
            allowed = torch.arange(length, device=x.device) <= positions[:, :, None]  # (B, T, length)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None])
        return self.out(y.transpose(1, 2).reshape(B, T, C))  # (B, H, T, D) -> (B, T, C)


class FeedForward(nn.Module):
    """SwiGLU MLP."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        hidden = int(2 * config.ffn_mult * config.d_model / 3)
        hidden = 32 * ((hidden + 31) // 32)
        self.gate_up = nn.Linear(config.d_model, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, config.d_model, bias=False)

    def forward(self, x):
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.attention_norm = nn.RMSNorm(config.d_model)
        self.attention = Attention(config)
        self.ffn_norm = nn.RMSNorm(config.d_model)
        self.ffn = FeedForward(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x, positions, rotary, cache):
        x = x + self.dropout(self.attention(self.attention_norm(x), positions, rotary, cache))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class TransformerCache(nn.Module):
    """One KVCache per layer."""

    def __init__(self, config: ModelConfig, batch_size: int, max_len: int, device, dtype):
        super().__init__()
        self.layers = nn.ModuleList(
            KVCache(batch_size, config.n_heads, max_len, config.head_dim, device, dtype)
            for _ in range(config.n_layers)
        )
        self.max_len = max_len


class TransformerDecoder(nn.Module):
    """Pre-norm causal Transformer with RoPE and `scaled_dot_product_attention`."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.rotary = Rotary(config.head_dim, config.max_seq_len, config.rope_theta)

    def new_cache(self, batch_size: int, max_len: int, device, dtype) -> TransformerCache:
        return TransformerCache(self.config, batch_size, min(max_len, self.config.max_seq_len), device, dtype)

    def forward(self, x, positions, cache: TransformerCache | None = None, lengths=None):
        for index, block in enumerate(self.blocks):
            x = block(x, positions, self.rotary, None if cache is None else cache.layers[index])
        return x


def build_decoder(config: ModelConfig) -> nn.Module:
    if config.decoder == "lstm":
        from engine.lstm_decoder import LSTMDecoder

        return LSTMDecoder(config)
    return TransformerDecoder(config)
