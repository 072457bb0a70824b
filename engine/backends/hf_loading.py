"""Find and load a Hugging Face transformers model: a local folder or a hub id, offline-aware.

    is_hf_folder(path) -> bool                    config.json with a transformers `model_type`
    locate(spec) -> str                           the local folder, or the hub id (cached or online)
    model_kind(config) -> "vision" | "text" | "speech"
    load_pretrained(spec, device) -> (model, processor_or_tokenizer, kind, device)

`device`: "auto" puts the model on CUDA when there is one (bf16 where supported, else fp16;
spread over every GPU with `device_map="auto"` when there are several and `accelerate` is
installed) and on the CPU otherwise (fp32); "cpu", "cuda" and "cuda:N" are obeyed.
Failures become `CheckpointError` (unknown id, no network, not a chat model, missing files)
or `BackendError` (out of GPU memory), with a message that says what to do.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path

import torch

from engine.backends.errors import OOM_ADVICE, BackendError
from engine.loading import default_dtype, resolve_device
from engine.types import CheckpointError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_TRUE = {"1", "on", "yes", "true"}


def is_hf_folder(path: str | Path) -> bool:
    """True for a folder whose config.json names a transformers `model_type`."""
    config = Path(path) / "config.json"
    try:
        return config.is_file() and "model_type" in json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def offline() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE, read now (not only when huggingface_hub was imported)."""
    from huggingface_hub import constants

    env = (os.environ.get(name, "").lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return any(env) or bool(constants.HF_HUB_OFFLINE)


def locate(spec: str) -> str:
    """The local folder for `spec`, or the hub id when it is cached or may be downloaded."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(
                f"{spec!r} is a folder without config.json: give the folder that holds "
                "the model's config.json, weights and tokenizer files."
            )
        return str(path)
    looks_like_path = spec.startswith(("/", ".", "~")) or path.suffix in (".json", ".safetensors", ".bin")
    if looks_like_path or not _HUB_ID.match(spec):
        raise CheckpointError(
            f"No model at {spec!r}: the path does not exist. Give a model folder or a "
            "Hugging Face hub id such as HuggingFaceTB/SmolVLM-256M-Instruct."
        )
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(spec, "config.json"), str) and offline():
        raise CheckpointError(
            f"The model {spec!r} was not found locally and there is no network (HF_HUB_OFFLINE is set). "
            f"Download it once with network (`hf download {spec}`), or pass a local model folder."
        )
    return spec


def model_kind(config) -> str:
    """'vision' (image-text-to-text), 'text' (causal LM) or 'speech' (speech-to-text); else CheckpointError."""
    from transformers.models.auto import modeling_auto as auto

    model_type = getattr(config, "model_type", "")
    if model_type in auto.MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES:
        return "speech"
    if model_type in auto.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        return "vision"
    if model_type in auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "text"
    raise CheckpointError(
        f"This is a {model_type!r} model, which cannot chat: give a text-generation "
        "(causal LM) or image-text-to-text model."
    )


def _load_config(where: str, spec: str):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(where)
    except ValueError as exc:  # unknown model_type: custom code or a newer transformers
        raise CheckpointError(
            f"{spec!r} is not a model type this transformers version knows ({exc}). It may need "
            "its repository's own code (trust_remote_code, not run here) or a newer "
            "transformers."
        ) from None
    except OSError as exc:
        raise _not_found(spec, exc) from None


def _not_found(spec: str, exc: Exception) -> CheckpointError:
    text = str(exc)
    if "connect" in text.lower() or "offline" in text.lower():
        return CheckpointError(
            f"The model {spec!r} was not found locally and there is no network: "
            "connect once to download it, or pass a local model folder."
        )
    if "not a valid model identifier" in text or "Repository Not Found" in text or "404" in text:
        return CheckpointError(
            f"No model {spec!r} on the Hugging Face Hub and no such local folder. "
            "Check the spelling (organisation/name), or log in for gated models."
        )
    return CheckpointError(f"Could not read the model {spec!r}: {text.splitlines()[0] if text else exc!r}")


def _placement(device: str) -> tuple[torch.device, dict]:
    """The main device and from_pretrained's placement arguments."""
    main = resolve_device(device)
    kwargs: dict = {"dtype": default_dtype(main)}
    has_accelerate = importlib.util.find_spec("accelerate") is not None
    if main.type == "cuda" and has_accelerate:
        several = str(device) == "auto" and torch.cuda.device_count() > 1
        kwargs["device_map"] = "auto" if several else str(main)
    return main, kwargs


def _load_processor(where: str, spec: str, kind: str):
    from transformers import AutoProcessor, AutoTokenizer

    try:
        processor = AutoProcessor.from_pretrained(where) if kind != "text" else AutoTokenizer.from_pretrained(where)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(
            f"{spec!r} has no usable tokenizer/processor files (tokenizer.json, "
            f"tokenizer_config.json, processor_config.json): {exc}"
        ) from None
    if kind == "vision" and not hasattr(processor, "tokenizer"):
        raise CheckpointError(f"{spec!r} is an image-text-to-text model but its processor has no tokenizer.")
    if kind == "speech":
        return processor
    tokenizer = getattr(processor, "tokenizer", processor)
    if kind == "vision" and not getattr(processor, "chat_template", None):
        processor.chat_template = getattr(tokenizer, "chat_template", None)
    if not getattr(processor, "chat_template", None):
        raise CheckpointError(
            f"{spec!r} has no chat template, so it is probably a base model rather than a chat (Instruct) model. "
            "Use its -Instruct/-Chat variant, or add a chat_template.jinja file to the model folder."
        )
    return processor


def load_pretrained(spec: str, device: str = "auto", expect: tuple[str, ...] = ("vision", "text")):
    """Load model and processor (VLMs) or tokenizer (text LLMs); returns (model, processor, kind, device)."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoModelForSpeechSeq2Seq

    where = locate(spec)
    kind = model_kind(_load_config(where, spec))
    if kind not in expect:
        if kind == "speech":
            raise CheckpointError(
                f"{spec!r} is a speech recognition model: use it for speech (--asr), "
                "and give a chat model as the model."
            )
        raise CheckpointError(f"{spec!r} is a chat model, not a speech recognition model.")
    processor = _load_processor(where, spec, kind)
    main, kwargs = _placement(device)
    auto_class = {
        "vision": AutoModelForImageTextToText,
        "text": AutoModelForCausalLM,
        "speech": AutoModelForSpeechSeq2Seq,
    }[kind]
    try:
        model = auto_class.from_pretrained(where, **kwargs)
        if "device_map" not in kwargs:
            model = model.to(main)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        raise BackendError(f"Out of GPU memory while loading {spec!r}. " + OOM_ADVICE) from None
    except OSError as exc:
        raise _not_found(spec, exc) from None
    except (ValueError, RuntimeError) as exc:  # shapes that do not match, corrupt safetensors
        raise CheckpointError(f"The weights of {spec!r} could not be loaded: {exc}") from None
    return model.eval(), processor, kind, main


def context_length(model, tokenizer) -> int:
    """Tokens the model reads at most: its position table, else the tokenizer's limit, else 2048."""
    text_config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    for value in (getattr(text_config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)):
        if isinstance(value, int) and 0 < value < 10**7:
            return value
    return 2048
