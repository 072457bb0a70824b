"""LoRA adapters for a pretrained language model: trained by `lab.train_notes`, merged at load.

    add_lora(model, AdapterConfig(rank=8))          # training: low-rank updates beside frozen weights
    save_adapters(model, config, directory)         # adapters.safetensors + adapters.json
    merge_adapters(model, directory)                # serving: W += scale * B @ A, no runtime cost
    adapted = adapted_copy(model, directory)        # a second model sharing all but the adapted weights

An adapter folder records the base model's GGUF sha256; merging into another model is
refused by name, so adapters trained on SmolLM2-135M never silently change another LM.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from engine.types import CheckpointError

ADAPTERS_FILE, ADAPTERS_CONFIG = "adapters.safetensors", "adapters.json"


@dataclass(frozen=True)
class AdapterConfig:
    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = ("attention.qkv", "attention.out")  # module names' endings
    base_sha256: str = ""  # the GGUF the adapters were trained on

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


class LoRALinear(nn.Module):
    """A frozen Linear plus a trainable low-rank update: y = W x + scale * B (A x)."""

    def __init__(self, base: nn.Linear, rank: int, scale: float):
        super().__init__()
        self.base, self.scale = base, scale
        self.lora_a = nn.Parameter(torch.randn(rank, base.in_features) / base.in_features**0.5)  # (r, in)
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))  # (out, r): starts as no change

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.T @ self.lora_b.T) * self.scale


def _targets(model: nn.Module, config: AdapterConfig) -> list[tuple[nn.Module, str, nn.Linear]]:
    found = []
    for name, module in model.named_modules():
        for child_name, child in module.named_children():
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, nn.Linear) and full.startswith("decoder.") and full.endswith(config.targets):
                found.append((module, child_name, child))
    return found


def add_lora(model: nn.Module, config: AdapterConfig) -> list[nn.Parameter]:
    """Freeze the model and wrap each target Linear; returns the adapters' parameters."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    params = []
    for parent, name, linear in _targets(model, config):
        wrapped = LoRALinear(linear, config.rank, config.scale).to(linear.weight.device, torch.float32)
        setattr(parent, name, wrapped)
        params += [wrapped.lora_a, wrapped.lora_b]
    return params


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{part}": getattr(module, part).detach().cpu().contiguous()
        for name, module in model.named_modules()
        if isinstance(module, LoRALinear)
        for part in ("lora_a", "lora_b")
    }


def save_adapters(model: nn.Module, config: AdapterConfig, directory: str | Path) -> Path:
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(adapter_state(model), str(directory / ADAPTERS_FILE))
    (directory / ADAPTERS_CONFIG).write_text(json.dumps(asdict(config), indent=2) + "\n")
    return directory


def load_adapter_config(directory: str | Path) -> AdapterConfig:
    path = Path(directory) / ADAPTERS_CONFIG
    try:
        raw = json.loads(path.read_text())
        return AdapterConfig(**{**raw, "targets": tuple(raw.get("targets", AdapterConfig.targets))})
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing: an adapter folder needs {ADAPTERS_CONFIG}.") from None
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is corrupt: {error}") from None


@torch.no_grad()
def merge_adapters(model: nn.Module, directory: str | Path, base_sha256: str | None = None) -> AdapterConfig:
    """Add the folder's low-rank updates into the model's weights (W += scale * B @ A)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    config = load_adapter_config(directory)
    if base_sha256 and config.base_sha256 and config.base_sha256 != base_sha256:
        raise CheckpointError(f"The adapters in {directory} were trained on another base model; not merged.")
    try:
        state = load_file(str(directory / ADAPTERS_FILE))
    except Exception as error:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{directory / ADAPTERS_FILE} cannot be read ({error}).") from None
    modules = dict(model.named_modules())
    for key in {k.rsplit(".", 1)[0] for k in state}:
        linear = modules.get(key)
        if not isinstance(linear, nn.Linear) or f"{key}.lora_a" not in state or f"{key}.lora_b" not in state:
            raise CheckpointError(f"{directory} does not fit this model (no layer {key}).")
        update = state[f"{key}.lora_b"].float() @ state[f"{key}.lora_a"].float()  # (out, r) @ (r, in)
        if update.shape != linear.weight.shape:
            raise CheckpointError(f"{directory} does not fit this model ({key} is {tuple(linear.weight.shape)}).")
        linear.weight += (config.scale * update).to(linear.weight.dtype)
    return config


def adapted_copy(model: nn.Module, directory: str | Path, base_sha256: str | None = None) -> nn.Module:
    """The model with the folder's adapters merged, as a second module that shares every weight
    the adapters do not touch with `model` (which stays as it was): the base model answers
    text-only chats unchanged while the adapted one answers about media."""
    import copy

    config = load_adapter_config(directory)
    targeted = {id(linear.weight) for _, _, linear in _targets(model, config)}
    shared = {id(p): p for p in list(model.parameters()) + list(model.buffers()) if id(p) not in targeted}
    adapted = copy.deepcopy(model, memo=dict(shared))
    merge_adapters(adapted, directory, base_sha256)
    return adapted.eval()
