"""Our image encoder and projector W_i in front of a pretrained language model (LLaVA-style).

    config = attach_vision(model, VisionConfig())       # a fresh encoder and projector (training)
    config = load_vision(model, "assets/models/smollm2-notes")  # the shipped ones (None: not there)
    save_vision(model, config, directory)

The encoder is the built-in model's CNN (`engine.encoders.ImageEncoder`: a letterboxed
S x S picture -> (S/16)^2 patch tokens of `image_channels[-1]` features); the projector is
`engine.fusion.build_projector` (Linear -> GELU -> Linear) into the LM's embedding width, plus the
IMAGE row of the modality embedding. `MultimodalModel`'s concat fusion then splices the
projected tokens where the prompt holds IMAGE placeholders (`LMTokenizer.chat_ids_with_images`).
Only these weights are saved (`vision.safetensors`, ~2 MB); the LM itself stays as it came.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from engine.encoders import ImageEncoder
from engine.fusion import build_projector
from engine.model import MultimodalModel
from engine.types import CheckpointError

VISION_FILE, VISION_CONFIG = "vision.safetensors", "vision.json"
PREFIXES = ("image_encoder.", "fusion.project_image.", "fusion.modality.")


@dataclass(frozen=True)
class VisionConfig:
    """What the image path looks like; saved beside its weights."""

    image_size: int = 48  # the letterboxed side the encoder reads
    image_channels: tuple[int, ...] = (32, 64, 128, 192)  # one stride-2 stage each: 48 -> 3x3 = 9 tokens
    d_model: int = 576  # the LM's embedding width the projector writes
    base_sha256: str | None = None  # the LM file these were trained against
    trained: dict = field(default_factory=dict)  # steps, minutes, data: how they were made

    @property
    def tokens(self) -> int:
        """Image tokens one picture becomes."""
        return (self.image_size // 2 ** len(self.image_channels)) ** 2


def attach_vision(model: MultimodalModel, config: VisionConfig) -> VisionConfig:
    """Give `model` a fresh image encoder of `config`'s shape, a fresh projector and modality
    embedding (its own modules: a model sharing weights with this one keeps its own)."""
    if config.d_model != model.config.d_model:
        raise CheckpointError(f"The image projector writes {config.d_model} wide; this LM is {model.config.d_model}.")
    weight = model.lm_head.weight
    shaped = replace(model.config, image_size=config.image_size, image_channels=tuple(config.image_channels))
    model.image_encoder = ImageEncoder(shaped).to(weight.device, weight.dtype)
    model.fusion.project_image = build_projector(model.image_encoder.out_dim, config.d_model).to(
        weight.device, weight.dtype
    )
    modality = nn.Embedding(3, config.d_model).to(weight.device, weight.dtype)
    nn.init.normal_(modality.weight, std=0.02)
    model.fusion.modality = modality
    return config


def vision_state(model: MultimodalModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items() if k.startswith(PREFIXES)}


def save_vision(model: MultimodalModel, config: VisionConfig, directory: str | Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(vision_state(model), directory / VISION_FILE)
    (directory / VISION_CONFIG).write_text(json.dumps(asdict(config), indent=1) + "\n")
    return directory / VISION_FILE


def load_vision(model: MultimodalModel, directory: str | Path, base_sha256: str | None = None) -> VisionConfig | None:
    """Attach the folder's trained image path to `model`; None when the folder has none.
    A file that is damaged, or was trained for another LM, is a CheckpointError naming it."""
    directory = Path(directory)
    weights, described = directory / VISION_FILE, directory / VISION_CONFIG
    if not weights.is_file():
        return None
    try:
        data = json.loads(described.read_text())
        data["image_channels"] = tuple(data["image_channels"])
        config = VisionConfig(**data)
        state = load_file(weights)
    except (OSError, ValueError, TypeError, KeyError, SafetensorError) as error:
        raise CheckpointError(f"{directory}'s image projector cannot be read ({error}); restore it with git.") from None
    if base_sha256 and config.base_sha256 and config.base_sha256 != base_sha256:
        raise CheckpointError(f"{weights} was trained for another language model file; retrain it for this one.")
    attach_vision(model, config)
    own = {k: v for k, v in model.state_dict().items() if k.startswith(PREFIXES)}
    if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
        raise CheckpointError(f"{weights} does not fit {VISION_CONFIG}'s shapes; retrain or restore it.")
    with torch.no_grad():
        for key, value in own.items():
            value.copy_(state[key].to(value.dtype))
    return config
