"""Backends behind one interface (`Backend`): the built-in model today; Hugging Face and
OpenAI-compatible servers plug in beside it.

    backend = load_backend("assets/models/builtin", device="auto")
"""

from __future__ import annotations

from pathlib import Path

from engine.backends.base import Backend, Capabilities
from engine.backends.builtin import BuiltinBackend
from engine.types import CheckpointError

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "assets" / "models" / "builtin"


def load_backend(spec: str | Path | None = None, device: str = "auto") -> Backend:
    """A model directory written by `engine.loading.save_checkpoint` (default: the shipped one)."""
    path = Path(spec) if spec else DEFAULT_MODEL
    if path.is_dir() and (path / "config.json").is_file():
        return BuiltinBackend.from_directory(path, device=device)
    if not spec:
        raise CheckpointError(f"The built-in model is not at {path}. Train it with "
                              "`python -m engine.train`, or pass --model DIRECTORY.")
    raise CheckpointError(f"No model at {spec!r}: give a directory with config.json, "
                          "model.safetensors and tokenizer.json.")


__all__ = ["Backend", "BuiltinBackend", "Capabilities", "load_backend", "DEFAULT_MODEL"]
