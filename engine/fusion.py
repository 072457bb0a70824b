"""Fusion: project every modality into the decoder's width and merge it into the sequence.

Three modes, chosen by `ModelConfig.fusion`:
- `concat` (default): each image/audio token is projected (W_i, W_a), given a modality
  embedding, and spliced into the sequence where the turn holds its placeholders.
- `sum`: each user turn with media gets one slot holding z = W_t·mean(text) + W_i·mean(image)
  + W_a·mean(audio), a conditioning vector for that turn.
- `gated`: the slot holds an attention-pooled mix of all the turn's projected tokens, with a
  learned gate per modality.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from engine.config import ModelConfig

TEXT, IMAGE, AUDIO = 0, 1, 2  # values of ModelInputs.media_kind


@dataclass
class MediaSlot:
    """Where `sum`/`gated` fusion writes one user turn's fused vector."""

    batch: int  # row in the batch
    position: int  # index along T of the <|media|> token
    text_span: tuple[int, int]  # [start, end) of the turn's text tokens along T
    images: list[int] = field(default_factory=list)  # indices into ModelInputs.images
    audio: list[int] = field(default_factory=list)  # indices into ModelInputs.audio


@dataclass
class ModelInputs:
    """One batch of prompts, as tensors on the model's device."""

    ids: torch.Tensor  # (B, T) token ids, right-padded
    positions: torch.Tensor  # (B, T) absolute positions
    lengths: torch.Tensor  # (B,) real tokens per row
    media_kind: torch.Tensor  # (B, T) TEXT | IMAGE | AUDIO placeholder per token (concat)
    images: torch.Tensor | None = None  # (N, 3, S, S) in order of appearance, row by row
    audio: list[torch.Tensor] = field(default_factory=list)  # each (n_mels, F)
    slots: list[MediaSlot] = field(default_factory=list)  # sum / gated


def build_projector(in_dim: int, out_dim: int) -> nn.Module:
    """LLaVA-1.5's projector: Linear → GELU → Linear."""
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))


class Fusion(nn.Module):
    def __init__(self, config: ModelConfig, image_dim: int, audio_dim: int):
        super().__init__()
        d = config.d_model
        self.mode = config.fusion
        self.project_image = build_projector(image_dim, d)  # W_i
        self.project_audio = build_projector(audio_dim, d)  # W_a
        self.modality = nn.Embedding(3, d)
        nn.init.normal_(self.modality.weight, std=0.02)
        if self.mode != "concat":
            self.project_text = build_projector(d, d)  # W_t
        if self.mode == "gated":
            self.query = nn.Parameter(torch.randn(d) * d**-0.5)
            self.gates = nn.Parameter(torch.zeros(3))  # sigmoid(0) = 0.5 per modality
            self.key = nn.Linear(d, d, bias=False)

    def forward(self, text: torch.Tensor, inputs: ModelInputs, image_tokens, audio_tokens) -> torch.Tensor:
        """text (B, T, C) embeddings; image_tokens (N, P, C_i) or None; audio_tokens [(L, C_a)]."""
        if self.mode == "concat":
            return self._splice(text, inputs, image_tokens, audio_tokens)
        return self._fill_slots(text, inputs, image_tokens, audio_tokens)

    def _splice(self, x, inputs, image_tokens, audio_tokens):
        for kind, tokens, project in (
            (IMAGE, image_tokens, self.project_image),
            (AUDIO, audio_tokens, self.project_audio),
        ):
            mask = inputs.media_kind == kind  # (B, T)
            if tokens is None or len(tokens) == 0:
                continue
            flat = tokens.flatten(0, 1) if kind == IMAGE else torch.cat(tokens)  # (sum of tokens, C_m)
            if int(mask.sum()) != flat.shape[0]:
                raise ValueError(f"{int(mask.sum())} placeholders for {flat.shape[0]} media tokens")
            values = project(flat) + self.modality.weight[kind]
            x = x.masked_scatter(mask[..., None], values.to(x.dtype))
        return x

    def _fill_slots(self, x, inputs, image_tokens, audio_tokens):
        if not inputs.slots:
            return x
        fused = []
        for slot in inputs.slots:
            start, end = slot.text_span
            parts = [(TEXT, self.project_text(x[slot.batch, start:end]))]  # (n_text, C)
            if slot.images:
                parts.append((IMAGE, self.project_image(image_tokens[slot.images].flatten(0, 1))))
            if slot.audio:
                parts.append((AUDIO, self.project_audio(torch.cat([audio_tokens[i] for i in slot.audio]))))
            fused.append(self._pool([(kind, p) for kind, p in parts if p.shape[0] > 0]))
        rows = torch.tensor([s.batch for s in inputs.slots], device=x.device)
        cols = torch.tensor([s.position for s in inputs.slots], device=x.device)
        return x.index_put((rows, cols), torch.stack(fused).to(x.dtype))

    def _pool(self, parts: list[tuple[int, torch.Tensor]]) -> torch.Tensor:
        if self.mode == "sum":  # z = z_t + z_i + z_a
            return sum(tokens.mean(0) for _, tokens in parts) + self.modality.weight[TEXT]
        tokens = torch.cat([torch.sigmoid(self.gates[kind]) * (t + self.modality.weight[kind]) for kind, t in parts])
        weights = torch.softmax(self.key(tokens) @ self.query * tokens.shape[-1] ** -0.5, dim=0)  # (n,)
        return weights @ tokens  # (n,) @ (n, C) -> (C,)
