"""Text encoder: a token embedding table in the decoder's width."""

from __future__ import annotations

import torch
from torch import nn

from engine.config import ModelConfig


class TextEncoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.embedding = nn.Embedding(config.vocab_size, config.d_model)
        nn.init.normal_(self.embedding.weight, std=0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(ids)  # (B, T) -> (B, T, d_model)
