"""An auxiliary training signal for the decoder: look at the shape the question is about.

The scene probe (lab.scene_probe) made each image token say what is in its cell of the
scene's 3x3 grid, and on held-out scenes it does, for every cell. Yet the decoder answered
"What color is the triangle?" with another shape's colour (63 of 63 wrong colours of the
previous model were colours of other shapes in the picture): it looked at the wrong token.
The generator knows which shape each answer is about, so training can also teach the look-up:
one attention head of one decoder layer is trained, at every position that predicts a token of
such an answer, to put its attention on the image tokens of the cells the answer is about
(the shape named by its kind, colour or place; for "How many red shapes?" every red shape).
The loss is -log of the attention mass on those tokens (a supervised-attention loss, as in
VQA work that trains attention on human or box annotations). It adds no parameters: the
shipped model is the same network, only its training differs.

    grounding = AttentionGrounding(config, layer=-2, head=0)
    queries = grounding_queries(prompt, quiz.answer_cells, config.image_tokens)
    with grounding.watch(model):           # records that layer's q, k in the forward pass
        hidden = model(collate(prompts))
    loss, n = grounding.loss([queries...]) # per batch row; (scalar, number of query positions)
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

from engine.config import ModelConfig
from engine.decoder import apply_rotary
from engine.fusion import IMAGE
from engine.prompt import Prompt
from engine.types import InputError
from lab.scene_probe import CELLS

Query = tuple[int, tuple[int, ...]]  # (position whose next token is part of an answer, key positions to look at)


def image_positions(prompt: Prompt, image_tokens: int) -> list[int]:
    """Sequence positions of the prompt's first picture's `image_tokens` tokens (grid cell order)."""
    return [i for i, kind in enumerate(prompt.media_kind) if kind == IMAGE][:image_tokens]


def grounding_queries(prompt: Prompt, answer_cells: tuple[tuple[int, ...], ...], image_tokens: int) -> list[Query]:
    """For each assistant turn whose answer is about some grid cells, every position that predicts
    one of its tokens (from <|assistant|> to its last word), with the positions of those cells'
    tokens of the prompt's first picture. [] when the prompt has no picture or lost turns to fit."""
    image = image_positions(prompt, image_tokens)
    if len(image) < image_tokens or image_tokens != CELLS or prompt.dropped_turns:
        return []
    answers: list[list[int]] = []  # the target positions of each assistant turn
    for position, target in enumerate(prompt.target_mask):
        if target:
            if not answers or answers[-1][-1] != position - 1:
                answers.append([])
            answers[-1].append(position)
    if len(answers) != len(answer_cells):
        raise ValueError(f"{len(answers)} assistant turns in the prompt but cells for {len(answer_cells)}")
    queries = []
    for positions, cells in zip(answers, answer_cells):
        if cells:
            keys = tuple(image[c] for c in cells)
            queries += [(position - 1, keys) for position in positions]  # position t predicts token t + 1
    return queries


class AttentionGrounding:
    """Reads one head's attention at chosen positions from the queries and keys of a forward pass."""

    def __init__(self, config: ModelConfig, layer: int = -2, head: int = 0, detach_keys: bool = False):
        problems = []
        if config.decoder != "transformer":
            problems.append("the Transformer decoder (the LSTM has no attention)")
        if config.fusion != "concat":
            problems.append("concat fusion (image tokens in the sequence)")
        if config.image_tokens != CELLS:
            problems.append(f"one image token per grid cell (image_tokens {CELLS}, not {config.image_tokens})")
        if not -config.n_layers <= layer < config.n_layers or not 0 <= head < config.n_heads:
            problems.append(f"a layer in 0..{config.n_layers - 1} and a head in 0..{config.n_heads - 1}")
        if problems:
            raise InputError("The grounding loss needs " + "; ".join(problems) + ".")
        self.layer, self.head = layer % config.n_layers, head
        # True: the loss moves only the query side (where the answer looks from), not the keys
        # made from the image tokens' states at this layer
        self.detach_keys = detach_keys
        self.d_model, self.head_dim = config.d_model, config.head_dim
        self._qkv: list[torch.Tensor] = []
        self._rotary = None

    @contextlib.contextmanager
    def watch(self, model):
        """Record the layer's qkv projection (B, T, 3C) during forward passes inside the block."""
        attention = model.decoder.blocks[self.layer].attention
        self._rotary = model.decoder.rotary
        self._qkv.clear()
        hook = attention.qkv.register_forward_hook(lambda module, args, out: self._qkv.append(out))
        try:
            yield self
        finally:
            hook.remove()

    def weights(self, rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The head's attention (N, T) at `positions` (N,) of batch `rows` (N,), from the last recorded
        forward pass (a plain causal one: token t sits at position t)."""
        return self._log_attention(rows, positions).exp()

    def _log_attention(self, rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        qkv = self._qkv[-1].float()
        T, D, h = qkv.shape[1], self.head_dim, self.head
        q = qkv[rows, positions, h * D : (h + 1) * D]  # (B, T, 3C) -> (N, D)
        k = qkv[rows, :, self.d_model + h * D : self.d_model + (h + 1) * D]  # (B, T, 3C) -> (N, T, D)
        if self.detach_keys:
            k = k.detach()
        cos, sin = self._rotary.tables(torch.arange(T, device=qkv.device)[None], torch.float32)  # (1, 1, T, D/2)
        q = apply_rotary(q, cos[0, 0, positions], sin[0, 0, positions])  # (N, D)
        k = apply_rotary(k, cos[0], sin[0])  # (N, T, D)
        scores = torch.einsum("nd,ntd->nt", q, k) / math.sqrt(D)  # (N, T)
        future = torch.arange(T, device=qkv.device)[None] > positions[:, None]
        return F.log_softmax(scores.masked_fill(future, float("-inf")), dim=-1)

    def loss(self, queries: list[list[Query]]) -> tuple[torch.Tensor | None, int]:
        """Mean -log attention mass on the target keys over every query of the batch's rows (from the
        last recorded forward pass), and how many queries there were; (None, 0) when there are none."""
        flat = [(row, position, keys) for row, row_queries in enumerate(queries) for position, keys in row_queries]
        if not flat or not self._qkv:
            return None, 0
        device = self._qkv[-1].device
        rows = torch.tensor([row for row, _, _ in flat], device=device)
        positions = torch.tensor([position for _, position, _ in flat], device=device)
        target = torch.zeros(len(flat), self._qkv[-1].shape[1], dtype=torch.bool, device=device)
        for n, (_, _, keys) in enumerate(flat):
            target[n, list(keys)] = True
        log_attention = self._log_attention(rows, positions)  # (N, T)
        on_target = log_attention.masked_fill(~target, float("-inf")).logsumexp(-1)  # (N,)
        return -on_target.mean(), len(flat)
