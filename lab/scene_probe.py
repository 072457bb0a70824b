"""An auxiliary training signal for the image encoder: name what is in each cell of a scene.

Trained from scratch, the image encoder gets almost no gradient through the language loss at
first (the decoder cannot use features that do not yet say anything), and it settles into
features that ignore the picture: after 2,000 steps of the first built-in run, swapping the
picture moved the encoder's output by 5% and shape answers were below chance. A pretrained
vision encoder would not have that problem; here the generator knows exactly what it drew,
so a linear probe on the image tokens is trained to name, for each cell of the scene's 3x3
grid, the shape kind (or empty / text) and its colour. The probe lives only in training
(`runs/.../last/scene_probe.pt`); the shipped model does not contain it.

    probe = SceneProbe(config)
    target = scene_target(example.meta["scene"])     # (9, 2) long, or None for non-scenes
    loss = probe.loss(image_tokens, targets)         # image_tokens (N, P, C), targets (N, 9, 2)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.config import ModelConfig
from lab.data.scenes import SHAPE_COLORS, SHAPES

CELLS = 9  # the scene generator's 3x3 grid
KINDS = ("empty", "text", *SHAPES)
COLORS = ("none", *SHAPE_COLORS)


def scene_target(scene: dict | None) -> torch.Tensor | None:
    """(9, 2): per grid cell (row-major), the index of its kind in KINDS and of its colour in COLORS."""
    if not scene:
        return None
    target = torch.zeros(CELLS, 2, dtype=torch.long)
    word = scene.get("word")
    if word:
        for col in range(3):
            target[word["row"] * 3 + col] = torch.tensor([KINDS.index("text"), 0])
    for shape in scene["shapes"]:
        target[shape["row"] * 3 + shape["col"]] = torch.tensor(
            [KINDS.index(shape["kind"]), COLORS.index(shape["color"])]
        )
    return target


class SceneProbe(nn.Module):
    """Per-cell kind and colour logits from an image's tokens.

    When the encoder makes exactly one token per grid cell (image_tokens == 9), each token is
    read alone by a shared linear map, so what is in a cell must sit in that cell's token;
    otherwise one linear map reads all the tokens together."""

    def __init__(self, config: ModelConfig, image_dim: int):
        super().__init__()
        self.per_token = config.image_tokens == CELLS
        # one token -> one cell's logits, or all tokens -> every cell's logits
        width, cells = (image_dim, 1) if self.per_token else (config.image_tokens * image_dim, CELLS)
        self.kinds = nn.Linear(width, cells * len(KINDS))
        self.colors = nn.Linear(width, cells * len(COLORS))

    def logits(self, image_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image_tokens (N, P, C) -> kind logits (N, 9, K) and colour logits (N, 9, K')."""
        features = image_tokens.float() if self.per_token else image_tokens.flatten(1).float()
        # per token: (N, 9, C); all tokens: (N, P, C) -> (N, P*C)
        kinds = self.kinds(features).view(-1, CELLS, len(KINDS))  # (N, 9, K)
        colors = self.colors(features).view(-1, CELLS, len(COLORS))  # (N, 9, K')
        return kinds, colors

    def loss(self, image_tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """image_tokens (N, P, C) from the image encoder; targets (N, 9, 2) from `scene_target`."""
        kinds, colors = self.logits(image_tokens)
        return F.cross_entropy(kinds.flatten(0, 1), targets[..., 0].flatten()) + F.cross_entropy(
            colors.flatten(0, 1), targets[..., 1].flatten()
        )

    @torch.no_grad()
    def hits(self, image_tokens: torch.Tensor, targets: torch.Tensor) -> dict[str, tuple[int, int]]:
        """How many cells it names right, as (right, of): the kind and the colour of cells with
        a shape, and the cells without one (empty or text)."""
        kinds, colors = (logits.argmax(-1) for logits in self.logits(image_tokens))  # (N, 9) each
        shaped = targets[..., 0] >= KINDS.index(SHAPES[0])
        return {
            "shape kind": (int((kinds == targets[..., 0])[shaped].sum()), int(shaped.sum())),
            "shape colour": (int((colors == targets[..., 1])[shaped].sum()), int(shaped.sum())),
            "empty or text": (int((kinds == targets[..., 0])[~shaped].sum()), int((~shaped).sum())),
        }
