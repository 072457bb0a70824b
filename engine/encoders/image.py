"""Image encoder: a small CNN whose last feature map becomes a grid of patch tokens."""

from __future__ import annotations

import torch
from torch import nn

from engine.config import ModelConfig


def _stage(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 convs, the first with stride 2 (halves the side)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1),
        nn.GroupNorm(8 if out_channels % 8 == 0 else 1, out_channels),
        nn.GELU(),
        nn.Conv2d(out_channels, out_channels, 3, padding=1),
        nn.GroupNorm(8 if out_channels % 8 == 0 else 1, out_channels),
        nn.GELU(),
    )


class ImageEncoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        channels = (3, *config.image_channels)
        self.stages = nn.Sequential(*(_stage(a, b) for a, b in zip(channels[:-1], channels[1:])))
        self.out_dim = channels[-1]
        self.position = nn.Parameter(torch.zeros(config.image_tokens, self.out_dim))
        nn.init.normal_(self.position, std=0.02)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.stages(pixels)  # (N, 3, S, S) -> (N, C, S', S')
        tokens = features.flatten(2).transpose(1, 2)  # (N, C, S', S') -> (N, S'*S', C), row-major
        return tokens + self.position
