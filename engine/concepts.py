"""Concept head: ground each image token in the words that name what it shows.

A small linear head reads every image token and says, one sigmoid per concept, which of a
fixed list of words describe it (for the built-in model: the six shape kinds and ten colours
of the generated scenes). The token then also carries those words' own embeddings, weighted
by the head's confidence, so a question that says "diamond" finds the image token that holds a
diamond by plain embedding similarity, and the answer word ("orange") is already in that
token's value vector — the tied output layer can copy it. The head is trained on the scenes'
labels (engine.scene_probe.ConceptProbe) together with the language loss.

The words are stored in `ModelConfig.image_concepts` as token ids, so a checkpoint rebuilds
the head without its tokenizer:

    head = ConceptHead(image_dim=192, word_ids=((362,), (349,), (382,)))
    logits = head.logits(image_tokens)                  # (N, P, C_i) -> (N, P, K)
    vectors = head(image_tokens, embedding.weight)      # (N, P, d_model)
"""

from __future__ import annotations

import torch
from torch import nn


class ConceptHead(nn.Module):
    def __init__(self, image_dim: int, word_ids: tuple[tuple[int, ...], ...]):
        super().__init__()
        if not word_ids or any(not ids for ids in word_ids):
            raise ValueError("every concept needs at least one token id")
        self.classify = nn.Linear(image_dim, len(word_ids))
        self.gain = nn.Parameter(torch.ones(()))
        width = max(len(ids) for ids in word_ids)
        ids = torch.zeros(len(word_ids), width, dtype=torch.long)
        mask = torch.zeros(len(word_ids), width)
        for row, token_ids in enumerate(word_ids):
            ids[row, : len(token_ids)] = torch.tensor(token_ids)
            mask[row, : len(token_ids)] = 1.0
        # rebuilt from the config on load, so not part of the checkpoint
        self.register_buffer("word_ids", ids, persistent=False)  # (K, L)
        self.register_buffer("word_mask", mask, persistent=False)  # (K, L)

    def logits(self, image_tokens: torch.Tensor) -> torch.Tensor:
        """Per token, one logit per concept: (N, P, C_i) -> (N, P, K)."""
        return self.classify(image_tokens)

    def word_vectors(self, embedding: torch.Tensor) -> torch.Tensor:
        """Each concept's word embedding (the mean over its tokens): (V, d) -> (K, d)."""
        mask = self.word_mask.to(embedding.dtype)
        summed = (embedding[self.word_ids] * mask[..., None]).sum(1)  # (K, L, d) -> (K, d)
        return summed / mask.sum(1, keepdim=True)

    def forward(self, image_tokens: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """The concept words each token shows, as one vector per token: (N, P, d)."""
        confidence = torch.sigmoid(self.logits(image_tokens))  # (N, P, K)
        words = self.word_vectors(embedding).to(confidence.dtype)  # (K, d)
        return self.gain * confidence @ words  # (N, P, K) @ (K, d) -> (N, P, d)
