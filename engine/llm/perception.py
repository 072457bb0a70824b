"""Our image and audio encoders, with projectors W_i and W_a, in front of a pretrained language model
(LLaVA / nanoVLM style).

    vision = attach(model, VisionConfig())                # fresh encoder and projector (training)
    vision = load_vision(model, "assets/models/smollm2-notes")   # the shipped ones (None: not there)
    hearing = load_hearing(model, "assets/models/smollm2-notes")
    save_part(model, vision, directory)

The encoders are the built-in model's (`engine.encoders`): a CNN over a letterboxed S x S picture
-> (S/16)^2 patch tokens, and 1-D convolutions over log-mel frames -> one token per 8 frames (at
most `max_tokens`); each projector is `engine.fusion.build_projector` (Linear -> GELU -> Linear)
into the LM's embedding width, plus its row of the modality embedding. `MultimodalModel`'s
concat fusion splices the projected tokens where the prompt holds IMAGE or AUDIO placeholders
(`LMTokenizer.chat_ids_with_media`). Only these weights are saved (`vision.safetensors`,
`hearing.safetensors`, a few MB each, with a JSON config beside each); the LM stays as it came.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from engine.encoders import AudioEncoder, ImageEncoder
from engine.fusion import AUDIO, IMAGE, build_projector
from engine.model import MultimodalModel
from engine.types import CheckpointError


@dataclass(frozen=True)
class VisionConfig:
    """What the image path looks like; saved beside its weights as vision.json."""

    image_size: int = 48  # the letterboxed side the encoder reads
    image_channels: tuple[int, ...] = (32, 64, 128, 192)  # one stride-2 stage each: 48 -> 3x3 = 9 tokens
    d_model: int = 576  # the LM's embedding width the projector writes
    base_sha256: str | None = None  # the LM file these were trained against
    trained: dict = field(default_factory=dict)  # steps, minutes: how they were made

    stem = "vision"
    encoder, projector, kind = "image_encoder", "project_image", IMAGE

    @property
    def tokens(self) -> int:
        """Image tokens one picture becomes."""
        return (self.image_size // 2 ** len(self.image_channels)) ** 2

    def build(self, model: MultimodalModel) -> nn.Module:
        shaped = replace(model.config, image_size=self.image_size, image_channels=tuple(self.image_channels))
        return ImageEncoder(shaped)


@dataclass(frozen=True)
class HearingConfig:
    """What the audio path looks like; saved beside its weights as hearing.json."""

    n_mels: int = 64
    hop_length: int = 160
    sample_rate: int = 16000
    audio_channels: int = 128
    max_tokens: int = 64  # a longer clip is pooled to this many tokens
    d_model: int = 576
    base_sha256: str | None = None
    trained: dict = field(default_factory=dict)

    stem = "hearing"
    encoder, projector, kind = "audio_encoder", "project_audio", AUDIO

    def tokens(self, n_frames: int) -> int:
        """Audio tokens a clip of `n_frames` log-mel frames becomes (three stride-2 convolutions)."""
        length = n_frames
        for _ in range(3):
            length = (length - 1) // 2 + 1
        return max(1, min(length, self.max_tokens))

    def build(self, model: MultimodalModel) -> nn.Module:
        shaped = replace(
            model.config, n_mels=self.n_mels, audio_channels=self.audio_channels, max_audio_tokens=self.max_tokens
        )
        return AudioEncoder(shaped)


Part = VisionConfig | HearingConfig


def attach(model: MultimodalModel, config: Part) -> Part:
    """Give `model` a fresh encoder of `config`'s shape, a fresh projector and its own modality
    embedding (other models that shared weights with this one keep theirs)."""
    if config.d_model != model.config.d_model:
        raise CheckpointError(
            f"The {config.stem} projector writes {config.d_model} wide; the LM is {model.config.d_model}."
        )
    weight = model.lm_head.weight
    encoder = config.build(model).to(weight.device, weight.dtype)
    setattr(model, config.encoder, encoder)
    setattr(
        model.fusion, config.projector, build_projector(encoder.out_dim, config.d_model).to(weight.device, weight.dtype)
    )
    modality = nn.Embedding(3, config.d_model).to(weight.device, weight.dtype)
    with torch.no_grad():
        modality.weight.copy_(model.fusion.modality.weight)  # the other modality's row is kept
        modality.weight[config.kind].normal_(std=0.02)
    model.fusion.modality = modality
    return config


def part_state(model: MultimodalModel, config: Part) -> dict[str, torch.Tensor]:
    """The part's weights: its encoder, its projector and its modality row."""
    prefixes = (f"{config.encoder}.", f"fusion.{config.projector}.")
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items() if k.startswith(prefixes)}
    state["modality"] = model.fusion.modality.weight[config.kind].detach().float().cpu().contiguous()
    return state


def save_part(model: MultimodalModel, config: Part, directory: str | Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(part_state(model, config), directory / f"{config.stem}.safetensors")
    (directory / f"{config.stem}.json").write_text(json.dumps(asdict(config), indent=1) + "\n")
    return directory / f"{config.stem}.safetensors"


def _load(model: MultimodalModel, cls: type, directory: str | Path, base_sha256: str | None) -> Part | None:
    directory = Path(directory)
    weights, described = directory / f"{cls.stem}.safetensors", directory / f"{cls.stem}.json"
    if not weights.is_file():
        return None
    try:
        data = json.loads(described.read_text())
        if "image_channels" in data:
            data["image_channels"] = tuple(data["image_channels"])
        config = cls(**data)
        state = load_file(weights)
    except (OSError, ValueError, TypeError, KeyError, SafetensorError) as error:
        raise CheckpointError(f"{weights} cannot be read ({error}); restore it with git.") from None
    if base_sha256 and config.base_sha256 and config.base_sha256 != base_sha256:
        raise CheckpointError(f"{weights} was trained for another language model file; retrain it for this one.")
    attach(model, config)
    own = part_state(model, config)
    if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
        raise CheckpointError(f"{weights} does not fit {described.name}'s shapes; retrain or restore it.")
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if key in state:
                value.copy_(state[key].to(value.dtype))
        model.fusion.modality.weight[config.kind] = state["modality"].to(model.fusion.modality.weight.dtype)
    return config


def load_vision(model: MultimodalModel, directory: str | Path, base_sha256: str | None = None) -> VisionConfig | None:
    """Attach the folder's trained image path to `model`; None when it has none. A damaged file,
    or one trained for another LM, is a CheckpointError naming it."""
    return _load(model, VisionConfig, directory, base_sha256)


def load_hearing(model: MultimodalModel, directory: str | Path, base_sha256: str | None = None) -> HearingConfig | None:
    """As `load_vision`, for the audio path."""
    return _load(model, HearingConfig, directory, base_sha256)
