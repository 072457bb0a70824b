"""A Hugging Face Llama folder → our model (SmolLM2-360M/1.7B, Llama-3.2-1B, ... downloaded by people online).

    lm = load_hf_folder(directory)   # config.json, model.safetensors (or shards + index), tokenizer files

Only Llama-family configs are accepted (engine.llm.convert.config_from_hf); anything else is
refused with one line naming it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from engine.llm.convert import build_model, config_from_hf, state_dict_from_hf
from engine.llm.tokenizer import LMTokenizer
from engine.types import CheckpointError

INDEX_FILE, WEIGHTS_FILE = "model.safetensors.index.json", "model.safetensors"


def read_hf_config(directory: Path) -> dict:
    path = directory / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: a Hugging Face model folder needs config.json.")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is corrupt (not valid JSON: {error}).") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is corrupt: expected a JSON object.")
    return data


def read_safetensors(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of model.safetensors, or of the shards model.safetensors.index.json names."""
    if (directory / INDEX_FILE).is_file():
        try:
            shards = sorted(set(json.loads((directory / INDEX_FILE).read_text())["weight_map"].values()))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as error:
            raise CheckpointError(f"{directory / INDEX_FILE} is corrupt ({type(error).__name__}: {error}).") from None
    elif (directory / WEIGHTS_FILE).is_file():
        shards = [WEIGHTS_FILE]
    else:
        raise CheckpointError(f"{directory} has no {WEIGHTS_FILE}: only safetensors weights are supported.")
    tensors = {}
    for shard in shards:
        try:
            tensors.update(load_file(str(directory / shard)))
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f"{directory / shard} is missing or corrupt: {error}") from None
    return tensors


def load_hf_folder(directory: str | Path, device: str | torch.device = "auto", dtype: torch.dtype | None = None):
    """A `LanguageModel` from a Hugging Face Llama folder, in eval mode on its device."""
    from engine.llm.lm import LanguageModel, placement

    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"No model folder at {directory}.")
    config = config_from_hf(read_hf_config(directory), str(directory / "config.json"))
    tokenizer = LMTokenizer.load(directory)
    state = state_dict_from_hf(read_safetensors(directory), config, str(directory))
    device, dtype = placement(device, dtype)
    model = build_model(config, state, device, dtype, str(directory))
    return LanguageModel(model, tokenizer, source=str(directory))
