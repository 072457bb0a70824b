"""Audio encoder: three stride-2 1-D convolutions over log-mel frames (8x subsampling)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.config import ModelConfig


class AudioEncoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        width = config.audio_channels
        self.convs = nn.Sequential(
            nn.Conv1d(config.n_mels, width, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv1d(width, width, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv1d(width, width, 3, stride=2, padding=1),
            nn.GELU(),
        )
        self.max_tokens = config.max_audio_tokens
        self.out_dim = width
        self.position = nn.Parameter(torch.zeros(config.max_audio_tokens, width))
        self.norm = nn.LayerNorm(width)
        nn.init.normal_(self.position, std=0.02)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """One clip (n_mels, F) → (L, C) with L = config.audio_tokens(F)."""
        features = self.convs(mel.unsqueeze(0))  # (1, n_mels, F) -> (1, C, ceil(F/8))
        if features.shape[-1] > self.max_tokens:
            features = F.adaptive_avg_pool1d(features, self.max_tokens)  # (1, C, max_tokens)
        tokens = features[0].transpose(0, 1)  # (1, C, L) -> (L, C)
        return self.norm(tokens + self.position[: tokens.shape[0]])
