"""LSTM decoder with the same interface as `TransformerDecoder`; its hidden state is its cache."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from engine.config import ModelConfig


class LSTMCache(nn.Module):
    """(h, c), each (n_layers, B, d_model)."""

    def __init__(self, config: ModelConfig, batch_size: int, device, dtype):
        super().__init__()
        shape = (config.n_layers, batch_size, config.d_model)
        self.register_buffer("h", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.register_buffer("c", torch.zeros(shape, device=device, dtype=dtype), persistent=False)


class LSTMDecoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.lstm = nn.LSTM(
            config.d_model,
            config.d_model,
            config.n_layers,
            batch_first=True,
            dropout=config.dropout if config.n_layers > 1 else 0.0,
        )

    def new_cache(self, batch_size: int, max_len: int, device, dtype) -> LSTMCache:
        return LSTMCache(self.config, batch_size, device, dtype)

    def forward(self, x, positions, cache: LSTMCache | None = None, lengths: torch.Tensor | None = None):
        """x (B, T, C). With `lengths` (B,), the state kept is the one after each row's last real token."""
        if cache is None:
            output, _ = self.lstm(x)
            return output
        state = (cache.h, cache.c)
        if lengths is None or bool((lengths == x.shape[1]).all()):
            output, (h, c) = self.lstm(x, state)
        else:  # right-padded rows of different lengths
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            output, (h, c) = self.lstm(packed, state)
            output, _ = pad_packed_sequence(output, batch_first=True, total_length=x.shape[1])
        cache.h.copy_(h)
        cache.c.copy_(c)
        return output
