"""The built-in multimodal model: encoders → fusion → decoder → next-token logits.

model = MultimodalModel(config)
hidden = model(inputs)                       # full forward (training): (B, T, C)
cache = model.new_cache(B, max_len, device, dtype)
hidden = model(inputs, cache)                # prefill into the cache
logits = model.step(ids, positions, cache)   # one new token per row: (B, 1) -> (B, V)
"""

from __future__ import annotations

import torch
from torch import nn

from engine.config import ModelConfig
from engine.decoder import build_decoder
from engine.encoders import AudioEncoder, ImageEncoder, TextEncoder
from engine.fusion import Fusion, ModelInputs


class MultimodalModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.text_encoder = TextEncoder(config)
        self.image_encoder = ImageEncoder(config)
        self.audio_encoder = AudioEncoder(config)
        self.fusion = Fusion(config, self.image_encoder.out_dim, self.audio_encoder.out_dim)
        self.decoder = build_decoder(config)
        self.norm = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.text_encoder.embedding.weight

    def embed(self, inputs: ModelInputs) -> torch.Tensor:
        """Token embeddings with the media fused in: (B, T, C)."""
        x = self.text_encoder(inputs.ids)
        has_media = inputs.images is not None or inputs.audio
        if not has_media and not inputs.slots:
            return x
        image_tokens = self.image_encoder(inputs.images.to(x.dtype)) if inputs.images is not None else None
        audio_tokens = [self.audio_encoder(mel.to(x.dtype)) for mel in inputs.audio]
        return self.fusion(x, inputs, image_tokens, audio_tokens)

    def forward(self, inputs: ModelInputs, cache: nn.Module | None = None) -> torch.Tensor:
        """Final hidden states (B, T, C); with a cache, also fills it (prefill)."""
        x = self.decoder(self.embed(inputs), inputs.positions, cache, inputs.lengths)
        return self.norm(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden)  # (..., C) -> (..., V)

    def step(self, ids: torch.Tensor, positions: torch.Tensor, cache: nn.Module) -> torch.Tensor:
        """One token per row (B, 1) at `positions` (B, 1) → next-token logits (B, V)."""
        x = self.decoder(self.text_encoder(ids), positions, cache)
        return self.lm_head(self.norm(x[:, -1]))

    def new_cache(self, batch_size: int, max_len: int, device=None, dtype=None, **growing) -> nn.Module:
        """`growing`: capacity=N starts a Transformer's cache at N positions (TransformerCache.reserve)."""
        weight = self.norm.weight  # the activations' dtype (the head may hold int8: engine.quantize)
        return self.decoder.new_cache(batch_size, max_len, device or weight.device, dtype or weight.dtype, **growing)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
