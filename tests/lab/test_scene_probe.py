"""The auxiliary scene probe: its targets, and that it teaches the image encoder to see."""

import random

import pytest
import torch

from engine import preprocess
from engine.config import preset
from engine.model import MultimodalModel
from lab.data.scenes import random_scene, render_scene
from lab.scene_probe import COLORS, KINDS, SceneProbe, scene_target


def test_targets_name_each_cell_of_the_grid():
    scene = {
        "shapes": [
            {"kind": "star", "color": "red", "row": 0, "col": 2},
            {"kind": "circle", "color": "blue", "row": 2, "col": 0},
        ],
        "word": {"text": "CAT", "row": 1},
    }
    target = scene_target(scene)
    assert target.shape == (9, 2)
    assert target[2].tolist() == [KINDS.index("star"), COLORS.index("red")]
    assert target[6].tolist() == [KINDS.index("circle"), COLORS.index("blue")]
    assert [target[i, 0].item() for i in (3, 4, 5)] == [KINDS.index("text")] * 3
    assert target[0].tolist() == [KINDS.index("empty"), COLORS.index("none")]
    assert scene_target(None) is None


@pytest.mark.parametrize(
    "grid", [{}, {"image_size": 48, "image_channels": (16, 32, 32, 32)}], ids=["all-tokens", "one-token-per-cell"]
)
def test_the_probe_loss_falls_as_the_image_encoder_learns(grid):
    torch.manual_seed(0)
    config = preset("tiny", **grid)
    model = MultimodalModel(config)
    probe = SceneProbe(config, model.image_encoder.out_dim)
    assert probe.per_token == (config.image_tokens == 9)
    scenes = [random_scene(random.Random(f"probe/{i}")) for i in range(16)]
    pixels = torch.stack([preprocess.image_to_tensor(render_scene(s, 64), config.image_size) for s in scenes])
    targets = torch.stack([scene_target(s.to_dict()) for s in scenes])
    optimizer = torch.optim.AdamW([*model.image_encoder.parameters(), *probe.parameters()], lr=3e-3)
    losses = []
    for _ in range(40):
        loss = probe.loss(model.image_encoder(pixels), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
