"""Checkpoints and device placement.

A checkpoint is a self-describing directory:

    config.json         ModelConfig (engine.config)
    model.safetensors   the weights
    tokenizer.json      the ChatTokenizer
    generation_config.json   optional: how to decode it ({"temperature": 0.0, "top_p": 1.0})

    save_checkpoint(directory, model, tokenizer)
    model, tokenizer = load_checkpoint(directory, device="auto")   # validated; eval mode

`device="auto"` picks CUDA when present (bf16 where supported, else fp16) and the CPU
otherwise (fp32). Loading checks every file and names the one that is missing, corrupt or
does not match the config.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model

from engine.config import ModelConfig
from engine.model import MultimodalModel
from engine.tokenizer import ChatTokenizer
from engine.types import CheckpointError

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
GENERATION_FILE = "generation_config.json"  # the name Hugging Face uses for the same thing


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' → cuda if available else cpu; refuse 'cuda' on a machine without one."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise CheckpointError("CUDA was asked for but no NVIDIA GPU is available; use --device cpu or auto.")
    return resolved


def default_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def save_checkpoint(directory: str | Path, model: MultimodalModel, tokenizer: ChatTokenizer) -> Path:
    """Write config.json, model.safetensors and tokenizer.json into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.config.save(directory / CONFIG_FILE)
    tokenizer.save(directory)
    save_model(model, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    return directory


def save_sampling(directory: str | Path, temperature: float, top_p: float = 1.0) -> None:
    """Record how the model should be decoded by default (what its evaluation used)."""
    text = json.dumps({"temperature": temperature, "top_p": top_p}, indent=2) + "\n"
    (Path(directory) / GENERATION_FILE).write_text(text)


def load_sampling(directory: str | Path) -> tuple[float, float] | None:
    """(temperature, top_p) from the directory's generation_config.json; None without one."""
    path = Path(directory) / GENERATION_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        temperature, top_p = float(data["temperature"]), float(data.get("top_p", 1.0))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise CheckpointError(
            f'{path} is corrupt: expected {{"temperature": number, "top_p": number}} ({type(error).__name__}: {error}).'
        ) from None
    if not (0 <= temperature <= 2 and 0 < top_p <= 1):
        raise CheckpointError(
            f"{path} asks for temperature {temperature} and top_p {top_p}: temperature must be "
            "between 0 and 2, top_p above 0 and at most 1."
        )
    return temperature, top_p


def _check_weights(path: Path, model: MultimodalModel) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    try:
        with safe_open(str(path), framework="pt") as handle:
            stored = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is corrupt: {error}") from error
    tied = {"lm_head.weight", "text_encoder.embedding.weight"} if model.config.tie_embeddings else set()
    missing = sorted(set(expected) - set(stored) - tied)
    if tied and not tied & set(stored):  # a tied pair is saved under one of its two names
        missing.append("text_encoder.embedding.weight")
    unexpected = sorted(set(stored) - set(expected))
    wrong = sorted(k for k in set(stored) & set(expected) if stored[k] != expected[k])
    problems = []
    if missing:
        problems.append(f"missing tensors {', '.join(missing[:5])}")
    if unexpected:
        problems.append(f"unexpected tensors {', '.join(unexpected[:5])}")
    if wrong:
        problems.append(
            "shapes that differ from config.json: " + ", ".join(f"{k} {stored[k]} vs {expected[k]}" for k in wrong[:5])
        )
    if problems:
        raise CheckpointError(f"{path} does not match {path.parent / CONFIG_FILE}: " + "; ".join(problems) + ".")


def load_checkpoint(
    directory: str | Path, device: str | torch.device = "auto", dtype: torch.dtype | None = None
) -> tuple[MultimodalModel, ChatTokenizer]:
    """Load a model once, in eval mode, on its device; every problem is a CheckpointError."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"No model directory at {directory}.")
    config = ModelConfig.load(directory / CONFIG_FILE)
    tokenizer = ChatTokenizer.load(directory)
    if tokenizer.vocab_size > config.vocab_size:
        raise CheckpointError(
            f"{directory / 'tokenizer.json'} has {tokenizer.vocab_size} tokens but "
            f"config.json allows {config.vocab_size}: they come from different models."
        )
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing: a model directory needs {WEIGHTS_FILE}.")
    model = MultimodalModel(config)
    _check_weights(weights, model)
    try:
        load_model(model, str(weights), strict=False)
    except (SafetensorError, OSError, RuntimeError) as error:
        raise CheckpointError(f"{weights} is corrupt: {error}") from error
    device = resolve_device(device)
    model = model.to(device=device, dtype=dtype or default_dtype(device)).eval()
    model.requires_grad_(False)
    return model, tokenizer
